// Stand-in for the parts of WiFiNINA the AWS sketch uses.
#pragma once

#include <Client.h>

const int WL_CONNECTED = 3;

class WiFiClass {
 public:
  int begin(const char* ssid, const char* passphrase);
  int status();
  unsigned long getTime();
};
extern WiFiClass WiFi;

class WiFiClient : public Client {
 public:
  int connect(const char* host, uint16_t port) override;
  int available() override;
  int read() override;
  void stop() override;
  uint8_t connected() override;
};
