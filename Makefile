# qkit build. `make` builds build/libqkit.{a,so} and build/qkit;
# `make test` builds and runs every tests/test_*.c and the worked example of
# every public header; `make SAN=1 test` does the
# same under AddressSanitizer + UndefinedBehaviorSanitizer (in build-san/).
# Kernels for an instruction set live in files named *__sse2.c, *__avx2.c,
# *__avxvnni.c, *__avx512.c, *__vnni.c, *__amx.c and get only that file's ISA flags (SSE2
# is the x86-64 baseline: none); dispatch picks them at run time from CPU
# features, so the binary runs on any x86-64.

.DEFAULT_GOAL := all
CC ?= gcc
PREFIX ?= /usr/local
ONNX_PROTO ?= /usr/include/onnx/onnx.proto

ifeq ($(FUZZ),1)
  # `make fuzz`: clang, the library instrumented for libFuzzer + ASan + UBSan
  # (in build-fuzz/), harnesses fuzz/fuzz_*.c linked with -fsanitize=fuzzer.
  CC := clang
  B := build-fuzz
  OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
         -fno-sanitize-recover=undefined
  LDSAN := -fsanitize=address,undefined
else ifeq ($(SAN),1)
  B := build-san
  OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDSAN := -fsanitize=address,undefined
else
  B := build
  OPT := -O2 -g
  LDSAN :=
endif

CPPFLAGS += -Iinclude -I$(B)/gen -D_GNU_SOURCE
CFLAGS += -std=c11 $(OPT) -Wall -Wextra -fPIC -pthread -ffp-contract=off
LDLIBS := -lprotobuf-c -lopenblas -ldnnl -lyaml -lpng -ljpeg -lz -lm -lpthread
LDFLAGS += $(LDSAN) -pthread

ISA_sse2   :=
ISA_avx2   := -mavx2 -mfma -mf16c
ISA_avx512 := -mavx2 -mfma -mavx512f -mavx512bw -mavx512vl -mavx512dq
ISA_avxvnni := $(ISA_avx2) -mavxvnni
ISA_vnni   := $(ISA_avx512) -mavx512vnni
ISA_amx    := $(ISA_vnni) -mamx-tile -mamx-int8

LIB_SRC := $(filter-out src/cli/%,$(wildcard src/*/*.c src/*/*/*.c))
CLI_SRC := $(wildcard src/cli/*.c)
GEN_SRC := $(B)/gen/onnx.pb-c.c
LIB_OBJ := $(patsubst %.c,$(B)/obj/%.o,$(LIB_SRC)) $(B)/obj/gen/onnx.pb-c.o
CLI_OBJ := $(patsubst %.c,$(B)/obj/%.o,$(CLI_SRC))
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(patsubst tests/%.c,$(B)/tests/%,$(TEST_SRC))
EX_SRC := $(wildcard examples/*.c)
EX_BIN := $(patsubst examples/%.c,$(B)/examples/%,$(EX_SRC))
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(patsubst bench/%.c,$(B)/bench/%,$(BENCH_SRC))
HDRS := $(wildcard include/qkit/*.h) $(wildcard src/*/*.h src/*/*/*.h)
# The worked example at the top of a public header (between " * Example" and
# " * (end of example)") becomes the program $(B)/hdrex/<header>; `make test`
# runs it (tools/header_examples.sh).
HDREX_HDR := $(shell grep -l '^ \* (end of example)' include/qkit/*.h)
HDREX_BIN := $(patsubst include/qkit/%.h,$(B)/hdrex/%,$(HDREX_HDR))

# The commit qkit bench records (src/bench/bench_version.c): $(B)/commit is
# rewritten only when HEAD moves, and that file is rebuilt then.
QKIT_COMMIT := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
$(shell mkdir -p $(B); [ "$$(cat $(B)/commit 2>/dev/null)" = "$(QKIT_COMMIT)" ] || echo "$(QKIT_COMMIT)" > $(B)/commit)
$(B)/obj/src/bench/bench_version.o: $(B)/commit
$(B)/obj/src/bench/bench_version.o: CPPFLAGS += -DQKIT_COMMIT='"$(QKIT_COMMIT)"'
# The report test decodes chromium's screenshot with libpng.
$(B)/tests/test_bench_report: LDLIBS += -lpng

FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)
FUZZ_BIN := $(patsubst fuzz/%.c,build-fuzz/%,$(FUZZ_SRC))

.PHONY: all lib test tests bench examples install clean fuzz
all: $(B)/libqkit.a $(B)/libqkit.so $(B)/qkit

# One rule makes both generated files (a two-target rule would run twice
# under -j and race on the copy).
$(B)/gen/onnx.pb-c.h: $(ONNX_PROTO)
	@mkdir -p $(B)/gen
	cp -f $(ONNX_PROTO) $(B)/gen/onnx.proto
	cd $(B)/gen && protoc-c --c_out=. onnx.proto
$(B)/gen/onnx.pb-c.c: $(B)/gen/onnx.pb-c.h
	@:

$(B)/obj/gen/onnx.pb-c.o: $(B)/gen/onnx.pb-c.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -w -c $< -o $@

isa_flags = $(if $(findstring __avxvnni,$1),$(ISA_avxvnni),$(if $(findstring __amx,$1),$(ISA_amx),$(if $(findstring __vnni,$1),$(ISA_vnni),$(if $(findstring __avx512,$1),$(ISA_avx512),$(if $(findstring __avx2,$1),$(ISA_avx2),$(if $(findstring __sse2,$1),$(ISA_sse2),))))))

$(B)/obj/%.o: %.c $(HDRS) $(B)/gen/onnx.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(call isa_flags,$<) -c $< -o $@

$(B)/libqkit.a: $(LIB_OBJ)
	rm -f $@
	ar rcs $@ $^

# The shared library exports only the public API (tools/exports.sh: the
# functions include/qkit/*.h declare) under SONAME libqkit.so.MAJOR; tests
# and benches that call internal functions link libqkit.a.
VER_MAJOR := $(shell sed -n 's/^\#define QKIT_VERSION_MAJOR \([0-9]*\).*/\1/p' include/qkit/version.h)
VER := $(shell sed -n 's/^\#define QKIT_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\).*/\2/p' include/qkit/version.h | paste -sd.)

$(B)/libqkit.map: $(wildcard include/qkit/*.h) tools/exports.sh
	@mkdir -p $(B)
	bash tools/exports.sh "$(CC)" > $@.tmp && mv $@.tmp $@

$(B)/libqkit.so: $(LIB_OBJ) $(B)/libqkit.map
	$(CC) -shared $(LDFLAGS) -Wl,-soname,libqkit.so.$(VER_MAJOR) -Wl,--version-script,$(B)/libqkit.map \
		-o $@ $(LIB_OBJ) $(LDLIBS)
	ln -sf libqkit.so $(B)/libqkit.so.$(VER_MAJOR)

$(B)/qkit: $(CLI_OBJ) $(B)/libqkit.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(B)/libqkit.a $(LDLIBS)

$(B)/tests/%: tests/%.c $(wildcard tests/*.h) $(B)/libqkit.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests $(CFLAGS) $< -o $@ $(B)/libqkit.a $(LDFLAGS) $(LDLIBS)

$(B)/examples/%: examples/%.c $(B)/libqkit.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $< -o $@ $(B)/libqkit.a $(LDFLAGS) $(LDLIBS)

$(B)/bench/%: bench/%.c $(B)/libqkit.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -O3 $< -o $@ $(B)/libqkit.a $(LDFLAGS) $(LDLIBS)

$(B)/hdrex/%.c: include/qkit/%.h tools/header_examples.sh
	bash tools/header_examples.sh $< $@

$(B)/hdrex/%: $(B)/hdrex/%.c $(B)/libqkit.a $(HDRS)
	$(CC) $(CPPFLAGS) $(CFLAGS) $< -o $@ $(B)/libqkit.a $(LDFLAGS) $(LDLIBS)

.PRECIOUS: $(B)/hdrex/%.c

# libFuzzer harnesses (clang only; run them with tools/fuzz.sh).
ifeq ($(FUZZ),1)
fuzz: $(FUZZ_BIN)
else
fuzz:
	$(MAKE) FUZZ=1 fuzz
endif

build-fuzz/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz_common.h $(B)/libqkit.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Isrc/train $(CFLAGS) -fsanitize=fuzzer $< -o $@ $(B)/libqkit.a $(LDFLAGS) $(LDLIBS)

# The embedding test is a host program with its own OpenMP and BLAS use.
$(B)/tests/test_embed: private CFLAGS += -fopenmp
$(B)/tests/test_embed: private LDFLAGS += -fopenmp

tests: all $(TEST_BIN) $(EX_BIN) $(HDREX_BIN)
examples: $(EX_BIN)
bench: all $(BENCH_BIN)

test: tests
	QKIT_BUILD=$(B) bash tools/run_tests.sh

# The Python package (python/qkit, docs/PYTHON.md) installs into PYTHON_SITE,
# by default $(PREFIX)/lib/python3.X/dist-packages (3.X: the version of
# $(PYTHON3)), a directory Debian's python3 searches for PREFIX /usr and
# /usr/local; the package finds the library at $(PREFIX)/lib from there.
PYTHON3 ?= python3
PYTHON_SITE ?=

install: all
	install -d $(DESTDIR)$(PREFIX)/include/qkit $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/qkit/*.h $(DESTDIR)$(PREFIX)/include/qkit/
	install -m 644 $(B)/libqkit.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(B)/libqkit.so $(DESTDIR)$(PREFIX)/lib/libqkit.so.$(VER)
	ln -sf libqkit.so.$(VER) $(DESTDIR)$(PREFIX)/lib/libqkit.so.$(VER_MAJOR)
	ln -sf libqkit.so.$(VER_MAJOR) $(DESTDIR)$(PREFIX)/lib/libqkit.so
	install -m 755 $(B)/qkit $(DESTDIR)$(PREFIX)/bin/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBS@|$(LDLIBS)|' -e 's|@VERSION@|$(VER)|' tools/qkit.pc.in \
		> $(DESTDIR)$(PREFIX)/lib/pkgconfig/qkit.pc
	@site="$(PYTHON_SITE)"; \
	if [ -z "$$site" ] && v=$$($(PYTHON3) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); then \
		site="$(PREFIX)/lib/python$$v/dist-packages"; fi; \
	if [ -n "$$site" ]; then \
		install -d "$(DESTDIR)$$site/qkit" && install -m 644 python/qkit/*.py "$(DESTDIR)$$site/qkit/" && \
		echo "installed the Python package into $$site/qkit"; \
	else echo "qkit: no $(PYTHON3): the Python package python/qkit is not installed (set PYTHON_SITE)"; fi

clean:
	rm -rf build build-san build-fuzz
