# Keel: thin wrappers around Meson (STYLE.md section 9). `make run` and
# `make test` work on a fresh Debian machine: they install what they need.

BUILD ?= build
KEEL_LISTEN ?= 127.0.0.1:8080

.PHONY: all build run test bench fuzz clean deps

all: build

deps:
	@scripts/deps.sh build

# Optimized binary at build/keel.
build: deps
	@[ -f $(BUILD)/build.ninja ] || meson setup $(BUILD) -Dbuildtype=release -Dtests=disabled >/dev/null
	@meson compile -C $(BUILD) >/dev/null
	@ln -sf src/keel $(BUILD)/keel
	@echo "built $(BUILD)/keel"

# A database without products gets a small demo catalog first (--if-empty).
# A failure there is reported and serve starts anyway, so that it reports any
# configuration problem as it always did.
run: build
	@mkdir -p var
	@$(BUILD)/keel seed --products 200 --if-empty >/dev/null || echo "Keel: demo catalog not seeded (see above)"
	@echo "Keel: starting on http://$(KEEL_LISTEN) (embedded default; Ctrl-C to stop)"
	@KEEL_LISTEN=$(KEEL_LISTEN) exec $(BUILD)/keel serve

test:
	@scripts/deps.sh test
	@scripts/test.sh

bench:
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory build
	@KEEL_BIN=$(BUILD)/keel bash bench/run.sh

fuzz:
	@scripts/deps.sh test
	@FUZZ_SECONDS=$${FUZZ_SECONDS:-300} scripts/fuzz.sh

clean:
	rm -rf build build-test build-asan build-fuzz
