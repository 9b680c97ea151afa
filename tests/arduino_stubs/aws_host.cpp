// Host entry point for the AWS sketch: the network, the sensor and the LED stood in for, so the
// sketch's own code runs as it would on the board.
//
// - Serial writes to the file descriptor in $STUB_SERIAL_FD (the test reads it).
// - WiFi joins, the clock is set, the broker accepts; the SHT31 reads 21.5 C, 43 %.
// - MqttClient::poll() delivers the next message of the script in $STUB_MQTT_SCRIPT, one per
//   call, as ArduinoMqttClient does: the callback gets the payload's size, available() is the
//   number of payload bytes not read yet and read() returns the next one. The payload is
//   streamed from the script file, never held here. A record is a header line
//   "<topic> <size> <delivered>" and then <delivered> payload bytes; when fewer than <size>
//   are delivered the connection drops after them (read() returns -1, connected() is false).
//   After the last message the program exits.
// - $STUB_LOG receives one line per event the test checks:
//     analogWrite <pin> <value>
//     publish <topic> <qos> <payload>
//     message <topic> <size> read <n> heap <bytes>   (after each callback; see below)
//     puback <topic>                                  (its last byte was read, or it is empty)
//   "heap" is the most memory the sketch held at once during the callback, beyond what it held
//   before: every C++ allocation (String is std::string here) goes through the operator new
//   below. $STUB_HEAP_LIMIT (bytes) stands for the board's RAM: past it the program logs
//   "out of memory" and exits 3, as a board would crash.
#include <Adafruit_SHT31.h>
#include <Arduino.h>
#include <ArduinoBearSSL.h>
#include <ArduinoECCX08.h>
#include <ArduinoMqttClient.h>
#include <WiFiNINA.h>
#include <stdarg.h>
#include <time.h>

#include <new>

SerialStub Serial;
ECCX08Class ECCX08;
WiFiClass WiFi;
ArduinoBearSSLClass ArduinoBearSSL;

static FILE* eventLog = nullptr;

static void logLine(const char* format, ...) __attribute__((format(printf, 1, 2)));
static void logLine(const char* format, ...) {
  if (!eventLog) return;
  va_list args;
  va_start(args, format);
  vfprintf(eventLog, format, args);
  va_end(args);
  fputc('\n', eventLog);
  fflush(eventLog);
}

// Memory: a size header before each block, so delete knows how much is given back.

static size_t liveBytes = 0;
static size_t peakBytes = 0;
static size_t heapLimit = 0;
static const size_t HEADER = 16;

void* operator new(size_t size) {
  if (heapLimit && liveBytes + size > heapLimit) {
    logLine("out of memory (%zu bytes held, %zu more asked for)", liveBytes, size);
    _exit(3);
  }
  char* block = static_cast<char*>(malloc(size + HEADER));
  if (!block) throw std::bad_alloc();
  *reinterpret_cast<size_t*>(block) = size;
  liveBytes += size;
  if (liveBytes > peakBytes) peakBytes = liveBytes;
  return block + HEADER;
}

void operator delete(void* pointer) noexcept {
  if (!pointer) return;
  char* block = static_cast<char*>(pointer) - HEADER;
  liveBytes -= *reinterpret_cast<size_t*>(block);
  free(block);
}

void* operator new[](size_t size) { return operator new(size); }
void operator delete[](void* pointer) noexcept { operator delete(pointer); }

// Time, pins, sensor.

static struct timespec started;

unsigned long millis() {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (now.tv_sec - started.tv_sec) * 1000UL + (now.tv_nsec - started.tv_nsec) / 1000000L;
}

void pinMode(int, int) {}
void analogWrite(int pin, int value) { logLine("analogWrite %d %d", pin, value); }

bool Adafruit_SHT31::begin(uint8_t) { return true; }
float Adafruit_SHT31::readTemperature() { return 21.5f; }
float Adafruit_SHT31::readHumidity() { return 43.0f; }

// WiFi and TLS: always there.

int WiFiClass::begin(const char*, const char*) { return WL_CONNECTED; }
int WiFiClass::status() { return WL_CONNECTED; }
unsigned long WiFiClass::getTime() { return 1700000000UL; }
int WiFiClient::connect(const char*, uint16_t) { return 1; }
int WiFiClient::available() { return 0; }
int WiFiClient::read() { return -1; }
void WiFiClient::stop() {}
uint8_t WiFiClient::connected() { return 1; }

BearSSLClient::BearSSLClient(Client&) {}
BearSSLClient::BearSSLClient(Client&, const br_x509_trust_anchor*, int) {}
void BearSSLClient::setEccSlot(int, const char[]) {}
int BearSSLClient::errorCode() { return 0; }
int BearSSLClient::connect(const char*, uint16_t) { return 1; }
int BearSSLClient::available() { return 0; }
int BearSSLClient::read() { return -1; }
void BearSSLClient::stop() {}
uint8_t BearSSLClient::connected() { return 1; }
void ArduinoBearSSLClass::onGetTime(unsigned long (*)()) {}

// MQTT: the script's messages.

static FILE* script = nullptr;
static void (*messageCallback)(int) = nullptr;
static bool brokerConnected = false;
static char rxTopic[300];
static long rxRemaining = 0;    // payload bytes not read yet (the library's _rxLength)
static long rxDeliverable = 0;  // of those, the ones that arrive before the connection drops
static long rxRead = 0;
static char txTopic[300];
static uint8_t txQos = 0;
static char txPayload[300];
static size_t txLength = 0;

MqttClient::MqttClient(Client&) {}
void MqttClient::setId(const char*) {}
void MqttClient::onMessage(void (*callback)(int)) { messageCallback = callback; }
int MqttClient::connect(const char*, uint16_t) { return brokerConnected = true; }
int MqttClient::connectError() { return 0; }
int MqttClient::connected() { return brokerConnected; }
int MqttClient::subscribe(const String&, uint8_t) { return 1; }
String MqttClient::messageTopic() { return String(rxTopic); }

int MqttClient::beginMessage(const String& topic, unsigned long, bool, uint8_t qos) {
  snprintf(txTopic, sizeof txTopic, "%s", topic.c_str());
  txQos = qos;
  txLength = 0;
  return 1;
}

void MqttClient::print(const String& text) {
  size_t n = text.length() < sizeof txPayload - 1 - txLength ? text.length()
                                                              : sizeof txPayload - 1 - txLength;
  memcpy(txPayload + txLength, text.c_str(), n);
  txLength += n;
}

int MqttClient::endMessage() {
  txPayload[txLength] = '\0';
  logLine("publish %s %d %s", txTopic, txQos, txPayload);
  return 1;
}

int MqttClient::available() { return static_cast<int>(rxRemaining); }

int MqttClient::read() {
  if (rxRemaining == 0) return -1;
  if (rxDeliverable == 0) {  // the connection dropped mid-message
    brokerConnected = false;
    return -1;
  }
  int c = fgetc(script);
  if (c == EOF) return -1;
  rxRemaining--;
  rxDeliverable--;
  rxRead++;
  if (rxRemaining == 0) logLine("puback %s", rxTopic);
  return c;
}

void MqttClient::poll() {
  long size = 0;
  long delivered = 0;
  if (fscanf(script, "%299s %ld %ld", rxTopic, &size, &delivered) != 3 || fgetc(script) != '\n') {
    exit(0);  // the script is done
  }
  rxRemaining = size;
  rxDeliverable = delivered;
  rxRead = 0;
  size_t before = liveBytes;
  peakBytes = liveBytes;
  messageCallback(static_cast<int>(size));
  if (size == 0) logLine("puback %s", rxTopic);  // the library acknowledges an empty one itself
  logLine("message %s %ld read %ld heap %zu", rxTopic, size, rxRead, peakBytes - before);
  // Bytes the callback left: the library drops them (and acknowledges nothing).
  for (; rxDeliverable > 0; rxDeliverable--) fgetc(script);
  rxRemaining = 0;
  if (delivered < size) brokerConnected = false;
}

void setup();
void loop();

int main() {
  clock_gettime(CLOCK_MONOTONIC, &started);
  if (const char* path = getenv("STUB_LOG")) eventLog = fopen(path, "w");
  if (const char* limit = getenv("STUB_HEAP_LIMIT")) heapLimit = strtoul(limit, nullptr, 10);
  script = fopen(getenv("STUB_MQTT_SCRIPT"), "rb");
  if (!script) return 2;
  setup();
  for (;;) {
    loop();
  }
}
