// A completion handler for tests of the ring: counts completions, errors among them, and the last result.
#pragma once

#include "proxy/ring.h"

namespace skproxy {

class CountingHandler final : public IoHandler {
 public:
  void OnCompletion(unsigned, int res, unsigned) override {
    ++completions;
    if (res < 0) ++errors;
    last = res;
  }
  int completions = 0;
  int errors = 0;
  int last = 1;  // no completion yet
};

}  // namespace skproxy
