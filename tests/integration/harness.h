// Everything an integration test uses, in one include: the counter pattern (pattern.h), SHA-256
// (sha256.h), loopback sockets (sockets.h) and stream I/O with deadlines (stream_io.h), /metrics scrapes
// (metrics_scrape.h), a real skproxy process (proxy_process.h), commands (command.h) and host statistics
// (host_stats.h). Everything talks to the kernel through real sockets; nothing is mocked, so a test that
// passes here passed through the binary's data path.
#pragma once

#include "tests/integration/command.h"
#include "tests/integration/deadline.h"
#include "tests/integration/host_stats.h"
#include "tests/integration/metrics_scrape.h"
#include "tests/integration/pattern.h"
#include "tests/integration/proxy_process.h"
#include "tests/integration/sha256.h"
#include "tests/integration/sockets.h"
#include "tests/integration/stream_io.h"
#include "tests/integration/units.h"
