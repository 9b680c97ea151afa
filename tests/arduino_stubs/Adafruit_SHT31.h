// Stand-in for the parts of Adafruit_SHT31 the AWS sketch uses.
#pragma once

#include <Arduino.h>

class Adafruit_SHT31 {
 public:
  bool begin(uint8_t address);
  float readTemperature();
  float readHumidity();
};
