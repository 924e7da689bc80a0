# Thin wrapper over CMake so `make`, `make test` and `make install` work.
#
#   make install PREFIX=/usr/local DESTDIR=/tmp/stage   # PREFIX applies to an existing build too
#   make man          # regenerate man/kalua.1 from `kalua help` (commit it; spec/install_spec.lua checks)
#   make lab-config   # regenerate docker/lab/ from spec/rig/rig's templates (spec/docker_spec.lua checks)
BUILD ?= build
PREFIX ?= /usr/local

all: $(BUILD)/Makefile
	cmake --build $(BUILD) -j2

$(BUILD)/Makefile:
	cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX)

test: all
	tools/test

install: all
	DESTDIR=$(DESTDIR) cmake --install $(BUILD) --prefix $(PREFIX)

man: all
	tools/gen-man $(BUILD)/kalua >man/kalua.1.tmp && mv man/kalua.1.tmp man/kalua.1

lab-config:
	docker/gen-lab-config

clean:
	rm -rf $(BUILD)

.PHONY: all test install man lab-config clean
