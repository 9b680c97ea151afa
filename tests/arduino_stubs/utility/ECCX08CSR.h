// Stand-in for ArduinoECCX08's ECCX08CSR: end() hands back the CSR the test made with a
// software key ($STUB_CSR_FILE, in the library's PEM layout), once begin() got a valid slot.
#pragma once

#include <Arduino.h>

#include <fstream>
#include <sstream>

class ECCX08CSRClass {
 public:
  int begin(int slot, bool newPrivateKey) {
    slot_ = slot;
    newKey_ = newPrivateKey;
    return slot >= 0 && slot <= 4;
  }
  void setCountryName(const String&) {}
  void setStateProvinceName(const String&) {}
  void setLocalityName(const String&) {}
  void setOrganizationName(const String&) {}
  void setOrganizationalUnitName(const String&) {}
  void setCommonName(const String& name) { commonName_ = name; }
  String end() {
    std::ifstream in(getenv("STUB_CSR_FILE"));
    std::stringstream text;
    text << in.rdbuf();
    return String(text.str());
  }

 private:
  int slot_ = 0;
  bool newKey_ = true;
  String commonName_;
};

extern ECCX08CSRClass ECCX08CSR;
