// Stand-in for ArduinoECCX08's ECCX08 object: a chip whose serial number and lock state come
// from the environment ($STUB_SERIAL, $STUB_LOCKED).
#pragma once

#include <Arduino.h>

class ECCX08Class {
 public:
  int begin() { return getenv("STUB_NO_CHIP") ? 0 : 1; }
  String serialNumber() { return String(getenv("STUB_SERIAL")); }
  int locked() { return locked_ >= 0 ? locked_ : atoi(getenv("STUB_LOCKED")); }
  int writeConfiguration(const byte*) { return 1; }
  int lock() { locked_ = 1; return 1; }

 private:
  int locked_ = -1;
};

extern ECCX08Class ECCX08;
