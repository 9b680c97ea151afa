// Host entry point for a sketch: the globals the stand-in headers declare, then setup() once
// and loop() forever, as the Arduino core does.
#include <Arduino.h>
#include <ArduinoECCX08.h>
#include <utility/ECCX08CSR.h>

SerialStub Serial;
ECCX08Class ECCX08;
ECCX08CSRClass ECCX08CSR;

void setup();
void loop();

int main() {
  setup();
  for (;;) {
    loop();
    delay(10);
  }
}
