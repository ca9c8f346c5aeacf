# Thin wrapper over CMake. `make run` and `make test` each install what is missing (Debian, as
# root), build, then run tierbus dev or the whole ctest suite; `make sanitize` and `make release`
# are the other two builds CI checks.
BUILD ?= build
JOBS ?= 2
DEPS := nats-server libnats-dev libprotobuf-c-dev protobuf-c-compiler libsqlite3-dev \
        libcmocka-dev libjansson-dev libyaml-dev pkg-config cmake gcc make
CMAKE_FLAGS ?=

.PHONY: all deps build run test sanitize release clean format

all: build

deps:
	@missing=$$(for p in $(DEPS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
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

# The sanitizer build used by CI: ASan + UBSan over the whole suite.
sanitize:
	$(MAKE) test BUILD=build-asan CMAKE_FLAGS="-DTB_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug"

# The optimized build CI compiles (warnings are errors): -O3 and NDEBUG find warnings that the
# default and Debug builds do not. Building is the check; the suite already ran twice.
release:
	$(MAKE) build BUILD=build-release CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Release"

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) build-asan build-release
