# Thin wrapper over CMake so `make`, `make test` and `make install` work.
BUILD ?= build
PREFIX ?= /usr/local

all: $(BUILD)/Makefile
	cmake --build $(BUILD) -j2

$(BUILD)/Makefile:
	cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX)

test: all
	tools/test

install: all
	DESTDIR=$(DESTDIR) cmake --install $(BUILD)

clean:
	rm -rf $(BUILD)

.PHONY: all test install clean
