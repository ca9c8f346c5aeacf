# Thin wrapper over CMake. `make run` and `make test` each install what is missing (Debian, as
# root), build, then run tierbus dev or the whole ctest suite; `make sanitize` and `make release`
# are the other two builds CI checks.
BUILD ?= build
JOBS ?= 2
DEPS := nats-server openssl libnats-dev libprotobuf-c-dev protobuf-c-compiler libsqlite3-dev \
        libcmocka-dev libjansson-dev libyaml-dev libmicrohttpd-dev libcurl4-openssl-dev pkg-config cmake gcc make \
        apache2-utils chromium chromium-driver python3-selenium
API_LOAD ?= 100000
CMAKE_FLAGS ?=
FUZZ_DEPS := clang libclang-rt-14-dev
FUZZ_SECONDS ?= 30
FUZZERS := fuzz_decode fuzz_publish_json fuzz_ndjson fuzz_config

.PHONY: all deps build run test sanitize release fuzz clean format api-load

all: build

deps:
	@missing=$$(for p in $(DEPS) $(EXTRA_DEPS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" -ne 0 ]; then echo "error: missing packages ($$missing) and not root; install them with apt-get" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

build: deps
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/tierbus dev $(ARGS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# Issue 11's API load: 200 concurrent clients (ApacheBench, apache2-utils, keep-alive) publish
# API_LOAD events through POST /api/events on loopback; it fails on any error or lost event and
# prints the rate and p50/p99 (bench/RESULTS.md, "Issue 11: API publish load"). Take the machine
# for it: flock keeps two benchmarks from sharing the cores.
api-load: build
	flock /tmp/tierbus-bench.lock env TB_API_LOAD=$(API_LOAD) ./$(BUILD)/test_api_load

# The sanitizer build used by CI: ASan + UBSan over the whole suite.
sanitize:
	$(MAKE) test BUILD=build-asan CMAKE_FLAGS="-DTB_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug"

# The optimized build CI compiles (warnings are errors): -O3 and NDEBUG find warnings that the
# default and Debug builds do not. Building is the check; the suite already ran twice.
release:
	$(MAKE) build BUILD=build-release CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Release"

# The libFuzzer harnesses (fuzz/), built with clang under ASan + UBSan: each first runs the
# regressions (inputs that once crashed it, tests/fuzz/regressions/NAME), then fuzzes for
# FUZZ_SECONDS from its seed corpus (tests/fuzz/NAME, copied so that new finds stay out of the
# tree). A crash fails the target and leaves the input as build-fuzz/crash-*.
fuzz:
	$(MAKE) deps EXTRA_DEPS="$(FUZZ_DEPS)"
	cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DTB_FUZZ=ON -DTB_WERROR=OFF \
	  -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build build-fuzz -j $(JOBS) --target $(FUZZERS)
	@set -e; for f in $(FUZZERS); do \
	  if [ -n "$$(ls tests/fuzz/regressions/$$f 2>/dev/null)" ]; then \
	    echo "$$f: regressions"; ./build-fuzz/$$f tests/fuzz/regressions/$$f/*; fi; \
	  rm -rf build-fuzz/corpus/$$f; mkdir -p build-fuzz/corpus/$$f; \
	  cp tests/fuzz/$$f/* build-fuzz/corpus/$$f/; \
	  echo "$$f: fuzzing for $(FUZZ_SECONDS) s"; \
	  (cd build-fuzz && ./$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	     -rss_limit_mb=2048 corpus/$$f >$$f.log 2>&1) || { tail -60 build-fuzz/$$f.log; exit 1; }; \
	  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' build-fuzz/$$f.log; \
	done

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) build-asan build-release build-fuzz
