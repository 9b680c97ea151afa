// Stand-in for ArduinoBearSSL: the real BearSSL types (from libbearssl-dev) and the client API.
#pragma once

#include <Client.h>
#include <bearssl.h>

class BearSSLClient : public Client {
 public:
  explicit BearSSLClient(Client& client);
  BearSSLClient(Client& client, const br_x509_trust_anchor* myTAs, int myNumTAs);
  void setEccSlot(int ecc508KeySlot, const char cert[]);
  int errorCode();
  int connect(const char* host, uint16_t port) override;
  int available() override;
  int read() override;
  void stop() override;
  uint8_t connected() override;
};

class ArduinoBearSSLClass {
 public:
  void onGetTime(unsigned long (*callback)());
};
extern ArduinoBearSSLClass ArduinoBearSSL;
