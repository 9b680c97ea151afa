/*
  ECCX08CSR: make a private key inside the board's crypto chip and print a certificate signing
  request (CSR) for it, for the course kit (see the README at the top of this repository).

  Board: Arduino MKR WiFi 1010 or Nano 33 IoT (both carry an ECC508/ECC608 crypto chip).
  Library: ArduinoECCX08.

  What it does, over the serial port at 9600 baud (the kit's notebook answers for you):
  1. waits until a computer opens the serial port, then prints the chip's serial number;
  2. if the chip is not locked yet, asks whether to configure and lock it. Locking is PERMANENT:
     the chip's configuration can never be changed again. It is needed before the chip will
     make keys, and it is the configuration every Arduino TLS sketch expects;
  3. asks for the CSR's subject (leave the five location fields empty; the common name defaults
     to the chip's serial number, which becomes the device name), the key slot (0-4; Arduino
     Cloud also uses slot 0, so pick 1-4 if you use it too) and whether to make a new key;
  4. prints the CSR. The private key never leaves the chip: only the CSR's public key does.

  Each prompt shows its default in brackets; an empty line (just Enter) takes it. The dialog is
  the ArduinoECCX08 library's ECCX08CSR example's, word for word, so guides written for that
  example work with this sketch too.
*/

#include <Arduino.h>
#include <ArduinoECCX08.h>
#include <utility/ECCX08CSR.h>
#include <utility/ECCX08DefaultTLSConfig.h>

// Read one line typed on the serial port: up to LF, ignoring CR.
String readLine() {
  String line;
  while (true) {
    if (Serial.available()) {
      char c = Serial.read();
      if (c == '\r') {
        continue;
      } else if (c == '\n') {
        break;
      }
      line += c;
    }
  }
  return line;
}

// Print "prompt [default]: ", read the answer (the default if empty) and echo it.
String promptAndReadLine(const char* prompt, const char* defaultValue) {
  Serial.print(prompt);
  Serial.print(" [");
  Serial.print(defaultValue);
  Serial.print("]: ");
  String answer = readLine();
  if (answer.length() == 0) {
    answer = defaultValue;
  }
  Serial.println(answer);
  return answer;
}

// Print why we stopped, then wait for the reset button.
void halt(const char* message) {
  Serial.println(message);
  while (true) {
    delay(1000);
  }
}

void setup() {
  Serial.begin(9600);
  while (!Serial);  // wait for the computer to open the port

  if (!ECCX08.begin()) {
    halt("No ECCX08 present!");
  }

  String serialNumber = ECCX08.serialNumber();
  Serial.print("ECCX08 Serial Number = ");
  Serial.println(serialNumber);
  Serial.println();

  if (!ECCX08.locked()) {
    String lock = promptAndReadLine("The ECCX08 on your board is not locked, would you like to PERMANENTLY configure and lock it now? (y/N)", "N");
    lock.toLowerCase();
    if (!lock.startsWith("y")) {
      halt("Unfortunately you can't proceed without locking it :(");
    }
    if (!ECCX08.writeConfiguration(ECCX08_DEFAULT_TLS_CONFIG)) {
      halt("Writing ECCX08 configuration failed!");
    }
    if (!ECCX08.lock()) {
      halt("Locking ECCX08 configuration failed!");
    }
    Serial.println("ECCX08 locked successfully");
    Serial.println();
  }

  Serial.println("Hi there, in order to generate a new CSR for your board, we'll need the following information ...");
  Serial.println();

  String country            = promptAndReadLine("Country Name (2 letter code)", "");
  String stateOrProvince    = promptAndReadLine("State or Province Name (full name)", "");
  String locality           = promptAndReadLine("Locality Name (eg, city)", "");
  String organization       = promptAndReadLine("Organization Name (eg, company)", "");
  String organizationalUnit = promptAndReadLine("Organizational Unit Name (eg, section)", "");
  String common             = promptAndReadLine("Common Name (e.g. server FQDN or YOUR name)", serialNumber.c_str());
  String slot               = promptAndReadLine("What slot would you like to use? (0 - 4)", "0");
  String generateNewKey     = promptAndReadLine("Would you like to generate a new private key? (Y/n)", "Y");
  Serial.println();

  generateNewKey.toLowerCase();
  if (!ECCX08CSR.begin(slot.toInt(), generateNewKey.startsWith("y"))) {
    halt("Error starting CSR generation!");
  }

  ECCX08CSR.setCountryName(country);
  ECCX08CSR.setStateProvinceName(stateOrProvince);
  ECCX08CSR.setLocalityName(locality);
  ECCX08CSR.setOrganizationName(organization);
  ECCX08CSR.setOrganizationalUnitName(organizationalUnit);
  ECCX08CSR.setCommonName(common);

  String csr = ECCX08CSR.end();
  // end() returns an empty String when signing fails (an Arduino String is never "false").
  if (csr.length() == 0) {
    halt("Error generating CSR!");
  }

  Serial.println("Here's your CSR, enjoy!");
  Serial.println();
  Serial.println(csr);
}

void loop() {
  // Nothing: the CSR is printed once. Press reset to make another.
}
