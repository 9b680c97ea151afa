// Stand-in for the parts of ArduinoMqttClient the AWS sketch uses.
#pragma once

#include <Client.h>

class MqttClient {
 public:
  explicit MqttClient(Client& client);
  void setId(const char* id);
  void onMessage(void (*callback)(int));
  int connect(const char* host, uint16_t port);
  int connectError();
  int connected();
  void poll();
  int subscribe(const String& topic, uint8_t qos);
  int beginMessage(const String& topic, unsigned long size, bool retain, uint8_t qos);
  void print(const String& text);
  int endMessage();
  String messageTopic();
  int available();
  int read();
};
