// Stand-in for the parts of the Arduino core the course's sketches use, so that they compile
// and run on the host. Serial is the master side of a pty (fd in $STUB_SERIAL_FD): the test
// opens the slave like a board's USB port. Not a model of the hardware: only of these APIs.
#pragma once

#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cctype>
#include <cmath>
#include <string>

typedef uint8_t byte;

inline void delay(unsigned long ms) { usleep(ms * 1000); }
unsigned long millis();
const int OUTPUT = 1;
void pinMode(int pin, int mode);
void analogWrite(int pin, int value);
inline long map(long x, long in_min, long in_max, long out_min, long out_max) {
  return (x - in_min) * (out_max - out_min) / (in_max - in_min) + out_min;
}
#define constrain(amt, low, high) ((amt) < (low) ? (low) : ((amt) > (high) ? (high) : (amt)))
using std::isnan;

class String {
 public:
  String() {}
  String(const char* s) : s_(s ? s : "") {}
  String(const std::string& s) : s_(s) {}
  explicit String(int n) : s_(std::to_string(n)) {}
  String(float f, int decimals) {
    char buffer[32];
    snprintf(buffer, sizeof buffer, "%.*f", decimals, f);
    s_ = buffer;
  }
  String operator+(const String& o) const { return String(s_ + o.s_); }
  String operator+(const char* o) const { return String(s_ + o); }
  friend String operator+(const char* a, const String& b) { return String(a + b.s_); }
  bool operator!=(const String& o) const { return s_ != o.s_; }
  bool operator==(const String& o) const { return s_ == o.s_; }
  String& operator+=(char c) { s_ += c; return *this; }
  String& operator=(const char* s) { s_ = s ? s : ""; return *this; }
  unsigned int length() const { return s_.size(); }
  const char* c_str() const { return s_.c_str(); }
  void toLowerCase() { for (auto& c : s_) c = std::tolower(static_cast<unsigned char>(c)); }
  bool startsWith(const char* prefix) const { return s_.compare(0, strlen(prefix), prefix) == 0; }
  long toInt() const { return atol(s_.c_str()); }
  const std::string& str() const { return s_; }

 private:
  std::string s_;
};

class SerialStub {
 public:
  void begin(long) { fd_ = atoi(getenv("STUB_SERIAL_FD")); }
  // A board's Serial is true once the computer has opened the port (DTR). On a pty: once
  // the slave is open, the master stops reporting POLLHUP.
  explicit operator bool() {
    pollfd p = {fd_, POLLIN, 0};
    poll(&p, 1, 10);
    return !(p.revents & POLLHUP);
  }
  int available() {
    pollfd p = {fd_, POLLIN, 0};
    return poll(&p, 1, 1) > 0 && (p.revents & POLLIN) ? 1 : 0;
  }
  int read() {
    unsigned char c;
    if (::read(fd_, &c, 1) != 1) return -1;
    // The test checks what the board was sent (never a 'y' it did not ask for).
    if (const char* log = getenv("STUB_RX_LOG")) {
      if (FILE* f = fopen(log, "ab")) { fputc(c, f); fclose(f); }
    }
    return c;
  }
  void print(const char* s) { write(s, strlen(s)); }
  void print(long n) { print(std::to_string(n).c_str()); }
  void print(int n) { print(std::to_string(n).c_str()); }
  void println(int n) { print(n); println(); }
  void print(const String& s) { write(s.c_str(), s.length()); }
  void println() { print("\r\n"); }
  void println(const char* s) { print(s); println(); }
  void println(const String& s) { print(s); println(); }

 private:
  void write(const char* data, size_t size) {
    while (size > 0) {
      ssize_t n = ::write(fd_, data, size);
      if (n <= 0) return;
      data += n;
      size -= n;
    }
  }
  int fd_ = -1;
};

extern SerialStub Serial;
