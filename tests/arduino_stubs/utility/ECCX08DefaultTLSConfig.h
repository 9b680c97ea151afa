// Stand-in: the library's default TLS configuration block (the content does not matter here).
#pragma once

#include <Arduino.h>

const byte ECCX08_DEFAULT_TLS_CONFIG[128] = {0};
