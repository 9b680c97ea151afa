/*
  AWS: the course's prototype firmware for the Arduino MKR WiFi 1010 / Nano 33 IoT.

  It joins WiFi, waits for the time (TLS needs it to check certificates), connects to the MQTT
  broker with mutual TLS using the private key inside the ECCX08 chip (slot KEY_SLOT) and the
  certificate in config.h, and then:
  - every 10 s publishes the SHT31's temperature (F) and humidity (%) as JSON, QoS 1, to
    things/<DEVICE_NAME>/environment;
  - listens on things/<DEVICE_NAME>/led for a brightness 0-100, sets the LED (PWM on LED_PIN)
    and reports what it applied on things/<DEVICE_NAME>/led/state; it ignores, and says so on
    the serial port, a message that is not a whole number 0-100 (reading only its first bytes).
  It reconnects WiFi and MQTT after a delay when either drops, and logs every step, with the
  reason for each failure, on the serial port (115200 baud).

  Libraries: WiFiNINA, ArduinoBearSSL, ArduinoECCX08, ArduinoMqttClient, Adafruit SHT31.
  Settings: config.h, written by `kit config-h` (see config.h.example).
*/

#include <ArduinoBearSSL.h>
#include <ArduinoECCX08.h>
#include <ArduinoMqttClient.h>
#include <WiFiNINA.h>
#include <Adafruit_SHT31.h>

#include "config.h"
#include "amazon_trust_anchors.h"
#include "local_trust_anchor.h"

const unsigned long PUBLISH_INTERVAL_MS = 10000;
const unsigned long RETRY_DELAY_MS = 5000;

WiFiClient wifiClient;
// The board trusts only the broker's roots: the local cloud's CA, or Amazon Root CA 1 and 3 (the
// library's built-in roots have Root CA 1 but not Root CA 3, which AWS uses for ECC suites).
#if KIT_LOCAL_CA
BearSSLClient sslClient(wifiClient, LOCAL_TRUST_ANCHORS, LOCAL_TRUST_ANCHORS_NUM);
#else
BearSSLClient sslClient(wifiClient, AMAZON_TRUST_ANCHORS, AMAZON_TRUST_ANCHORS_NUM);
#endif
MqttClient mqttClient(sslClient);
Adafruit_SHT31 sht31;

String environmentTopic;
String ledTopic;
String ledStateTopic;
unsigned long lastPublish = 0;

unsigned long getTime() {
  return WiFi.getTime();
}

// Why a TLS connection failed, in words (BearSSL error codes).
const char* tlsReason(int code) {
  switch (code) {
    case 0: return "no TLS error (is the broker reachable on this port? campus networks often block 8883)";
    case 54: return "a certificate is expired or not yet valid (is the time right?)";
    case 56: return "the broker's certificate is not for this host name (check BROKER_HOST)";
    case 62: return "the broker's certificate is not trusted (wrong broker, or wrong CA in config.h)";
    default: return "see BearSSL's error list";
  }
}

// Why the broker refused the MQTT connection (ArduinoMqttClient codes).
const char* mqttReason(int code) {
  switch (code) {
    // AWS IoT answers a CONNECT its policy refuses by closing the connection, with no code.
    case -2: return "connection refused or closed (TLS failed, nothing listens there, or on AWS: certificate not ACTIVE, or client id is not its name)";
    case -1: return "timed out (on AWS also: the policy refused the connection)";
    case 2: return "client id rejected";
    case 5: return "not authorized (the kit's local broker: certificate not registered, or client id is not its name)";
    default: return "unexpected";
  }
}

void connectWiFi() {
  Serial.print("WiFi: joining ");
  Serial.println(WIFI_SSID);
  while (WiFi.begin(WIFI_SSID, WIFI_PASS) != WL_CONNECTED) {
    Serial.println("WiFi: failed (2.4 GHz WPA2-Personal network? right password?); retrying in 5 s");
    delay(RETRY_DELAY_MS);
  }
  Serial.println("WiFi: connected");
  Serial.print("Time: waiting for the WiFi module's clock");
  while (getTime() == 0) {
    Serial.print(".");
    delay(1000);
  }
  Serial.println(" ok");
}

// One attempt to connect to the broker; on failure, say why and wait before the next.
void connectMQTT() {
  Serial.print("MQTT: connecting to ");
  Serial.print(BROKER_HOST);
  Serial.print(":");
  Serial.print(BROKER_PORT);
  Serial.print(" as ");
  Serial.println(DEVICE_NAME);
  if (!mqttClient.connect(BROKER_HOST, BROKER_PORT)) {
    int mqttError = mqttClient.connectError();
    int tlsError = sslClient.errorCode();
    Serial.print("MQTT: failed, error ");
    Serial.print(mqttError);
    Serial.print(" (");
    Serial.print(mqttReason(mqttError));
    Serial.print("), TLS error ");
    Serial.print(tlsError);
    Serial.print(" (");
    Serial.print(tlsReason(tlsError));
    Serial.println("); retrying in 5 s");
    delay(RETRY_DELAY_MS);
    return;
  }
  Serial.println("MQTT: connected");
  mqttClient.subscribe(ledTopic, 1);
  Serial.print("MQTT: subscribed to ");
  Serial.println(ledTopic);
}

void publish(const String& topic, const String& payload) {
  // An explicit size: without it the library truncates messages at 256 bytes on SAMD.
  mqttClient.beginMessage(topic, (unsigned long)payload.length(), false, 1);
  mqttClient.print(payload);
  if (!mqttClient.endMessage()) {
    Serial.print("MQTT: not sent to ");
    Serial.println(topic);
  }
}

void publishEnvironment() {
  float celsius = sht31.readTemperature();
  float humidity = sht31.readHumidity();
  if (isnan(celsius) || isnan(humidity)) {
    Serial.println("SHT31: no reading (check the wiring); nothing sent");
    return;
  }
  float fahrenheit = celsius * 9.0 / 5.0 + 32.0;
  String payload = "{\n  \"temperature\": " + String(fahrenheit, 1) +
                   ",\n  \"humidity\": " + String((int)(humidity + 0.5)) + "\n}";
  publish(environmentTopic, payload);
  Serial.print("Published ");
  Serial.print(environmentTopic);
  Serial.print(" temperature ");
  Serial.print(String(fahrenheit, 1));
  Serial.print(" humidity ");
  Serial.println(String((int)(humidity + 0.5)));
}

// A brightness is 0-100: "100" with whitespace around it fits in this many bytes. A longer message
// is not a brightness, whatever it holds: it is read out (the library acknowledges a message
// once its last byte is read) but not kept, so a big one (AWS IoT delivers up to 128 KB) cannot
// fill the board's memory.
const int LED_MESSAGE_MAX = 8;

// The brightness in text[0..length): a whole number 0-100, whitespace around it allowed; -1 if
// it is not one.
int parseBrightness(const char* text, int length) {
  int i = 0;
  while (i < length && isspace((unsigned char)text[i])) {
    i++;
  }
  int digits = 0;
  int value = 0;
  while (i < length && isdigit((unsigned char)text[i])) {
    value = value * 10 + (text[i] - '0');  // at most LED_MESSAGE_MAX digits: no overflow
    digits++;
    i++;
  }
  while (i < length && isspace((unsigned char)text[i])) {
    i++;
  }
  if (digits == 0 || i < length || value > 100) {
    return -1;
  }
  return value;
}

void onMessageReceived(int messageSize) {
  String topic = mqttClient.messageTopic();
  char text[LED_MESSAGE_MAX];
  int kept = 0;
  int received = 0;
  while (mqttClient.available()) {
    int c = mqttClient.read();
    if (c < 0) {
      break;  // no byte for a second, or the connection dropped: the library drops the rest
    }
    if (kept < LED_MESSAGE_MAX) {
      text[kept++] = (char)c;
    }
    received++;
  }
  if (topic != ledTopic) {
    return;
  }
  if (received < messageSize) {
    Serial.print("LED: ignored a message cut short (");
    Serial.print(received);
    Serial.print(" of ");
    Serial.print(messageSize);
    Serial.println(" bytes arrived)");
    return;
  }
  int brightness = messageSize <= LED_MESSAGE_MAX ? parseBrightness(text, kept) : -1;
  if (brightness < 0) {
    Serial.print("LED: ignored a message of ");
    Serial.print(messageSize);
    Serial.println(messageSize == 1 ? " byte (a brightness is 0-100)"
                                    : " bytes (a brightness is 0-100)");
    return;
  }
  analogWrite(LED_PIN, map(brightness, 0, 100, 0, 255));
  Serial.print("LED: ");
  Serial.print(brightness);
  Serial.println("%");
  publish(ledStateTopic, String(brightness));
}

void setup() {
  Serial.begin(115200);
  // Wait up to 3 s for a serial monitor, then run without one (on a power bank, say).
  for (unsigned long start = millis(); !Serial && millis() - start < 3000;) {
  }
  pinMode(LED_PIN, OUTPUT);
  if (!ECCX08.begin()) {
    Serial.println("No ECCX08 present!");
    while (1) {
      delay(1000);
    }
  }
  if (!sht31.begin(0x44)) {
    Serial.println("SHT31: not found at 0x44 (check the wiring)");
  }
  ArduinoBearSSL.onGetTime(getTime);
  sslClient.setEccSlot(KEY_SLOT, DEVICE_CERTIFICATE);
  environmentTopic = String("things/") + DEVICE_NAME + "/environment";
  ledTopic = String("things/") + DEVICE_NAME + "/led";
  ledStateTopic = ledTopic + "/state";
  mqttClient.setId(DEVICE_NAME);
  mqttClient.onMessage(onMessageReceived);
}

void loop() {
  if (WiFi.status() != WL_CONNECTED) {
    connectWiFi();
  }
  bool due = millis() - lastPublish >= PUBLISH_INTERVAL_MS;
  if (due) {
    lastPublish = millis();
  }
  if (!mqttClient.connected()) {
    if (due) {
      // Readings are not kept while the broker is away: say so, so gaps in the plot make sense.
      Serial.print("MQTT: not sent to ");
      Serial.print(environmentTopic);
      Serial.println(" (not connected)");
    }
    connectMQTT();
    return;
  }
  mqttClient.poll();
  if (due) {
    publishEnvironment();
  }
}
