# keybroker: build, test, install. See README.md.
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR = $(PREFIX)/bin
SBINDIR = $(PREFIX)/sbin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR = $(PREFIX)/include
PKGCONFIGDIR = $(LIBDIR)/pkgconfig
MANDIR = $(PREFIX)/share/man
# Example configurations and unit drop-ins, for the admin to copy.
EXAMPLESDIR = $(PREFIX)/share/keybroker/examples
# Where systemd looks for units, users and directories to make (as its
# pkg-config file says, whatever PREFIX is).
SYSTEMD_PC = $(shell pkg-config --exists systemd && echo systemd)
SYSTEMDUNITDIR ?= $(if $(SYSTEMD_PC),$(shell pkg-config --variable=systemdsystemunitdir systemd),/lib/systemd/system)
SYSUSERSDIR ?= $(if $(SYSTEMD_PC),$(shell pkg-config --variable=sysusersdir systemd),/usr/lib/sysusers.d)
TMPFILESDIR ?= $(if $(SYSTEMD_PC),$(shell pkg-config --variable=tmpfilesdir systemd),/usr/lib/tmpfiles.d)
VERSION = 0.1.0

B ?= build
CC ?= cc
PKGS = p11-kit-1 openssl libconfig jansson libsystemd
CPPFLAGS += -D_GNU_SOURCE -DOPENSSL_API_COMPAT=30000 -DOPENSSL_NO_DEPRECATED \
	-DKB_VERSION='"$(VERSION)"' \
	-DKB_P11_MODULE_CONFIGS='"$(shell pkg-config --variable=p11_module_configs p11-kit-1)"' \
	-Icommon -Iconfig -Ipkcs11 -Ibroker -Iclient
CFLAGS ?= -O2 -g
CFLAGS += -std=c11 -Wall -Wextra -Wformat=2 -Wshadow -Wstrict-prototypes \
	-Wmissing-prototypes -Wno-unused-parameter -Werror=implicit \
	-fstack-protector-strong -fPIC \
	$(shell pkg-config --cflags $(PKGS))
# SANITIZE=1 (or address): AddressSanitizer + UBSan; SANITIZE=thread:
# ThreadSanitizer.
SANITIZE ?=
SANFLAGS =
ifeq ($(SANITIZE),thread)
SANFLAGS = -fsanitize=thread
CFLAGS += $(SANFLAGS) -fno-omit-frame-pointer
LDFLAGS += $(SANFLAGS)
else ifneq ($(SANITIZE),)
SANFLAGS = -fsanitize=address,undefined
CFLAGS += $(SANFLAGS) -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += $(SANFLAGS)
else
CPPFLAGS += -D_FORTIFY_SOURCE=2
endif
LDFLAGS += -Wl,-z,relro,-z,now
LIBS = $(shell pkg-config --libs $(PKGS)) -lpthread

COMMON = common/kb_log.c common/kb_b64.c common/kb_kid.c common/kb_secret.c \
	common/kb_oaep.c common/kb_pkcs1.c common/kb_json.c common/kb_grant.c \
	common/kb_jws.c common/kb_error.c common/kb_pkey.c common/kb_buf.c \
	common/kb_duration.c common/kb_trail.c common/kb_user.c \
	common/kb_progress.c
CONFIG = config/kb_config.c
PKCS11 = pkcs11/p11_token.c pkcs11/p11_store.c pkcs11/p11_confirm.c \
	pkcs11/p11_object.c
BROKER = broker/kb_proto.c broker/kb_ops.c broker/kb_sessions.c \
	broker/kb_conn.c broker/kb_server.c broker/kb_acl.c broker/kb_jwk.c \
	broker/kb_jwt.c broker/kb_peer.c broker/kb_policy.c broker/kb_rate.c \
	broker/kb_listen.c broker/kb_admit.c broker/kb_lograte.c broker/kb_admin.c \
	broker/kb_key.c broker/kb_keyadmin.c broker/kb_identity.c \
	broker/kb_catalog.c broker/kb_keystore.c broker/kb_issuer.c \
	broker/kb_keystate.c broker/kb_lifecycle.c broker/kb_keyattr.c \
	broker/kb_rsaimport.c broker/kb_auditkey.c broker/kb_audit.c \
	broker/kb_record.c broker/kb_forward.c broker/kb_notify.c
CLIENTLIB = client/libkeybroker.c client/kb_jread.c common/kb_b64.c \
	common/kb_kid.c common/kb_buf.c

obj = $(patsubst %.c,$(B)/%.o,$(1))

# Each folder is an archive, linked top layer first, so a call up a layer
# usually fails to link; scripts/check-layers.sh (make lint) is the check
# that always catches one.
A_COMMON = $(B)/common/libcommon.a
A_CONFIG = $(B)/config/libconfig.a
A_PKCS11 = $(B)/pkcs11/libpkcs11.a
A_BROKER = $(B)/broker/libbroker.a
CLIENT_OBJS = $(call obj,$(CLIENTLIB))

PROGS = $(B)/keybrokerd $(B)/keybroker $(B)/keybrokerctl $(B)/keybroker-audit
LIBKB = $(B)/libkeybroker.so.0 $(B)/libkeybroker.a

all: $(PROGS) $(LIBKB)

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(A_COMMON): $(call obj,$(COMMON))
$(A_CONFIG): $(call obj,$(CONFIG))
$(A_PKCS11): $(call obj,$(PKCS11))
$(A_BROKER): $(call obj,$(BROKER))
$(A_COMMON) $(A_CONFIG) $(A_PKCS11) $(A_BROKER):
	@rm -f $@
	@echo "  AR      $@"
	@ar rcs $@ $^

$(B)/keybrokerd: $(B)/broker/keybrokerd.o $(A_BROKER) $(A_PKCS11) \
		$(A_CONFIG) $(A_COMMON)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(B)/keybrokerctl: $(B)/client/keybrokerctl.o $(B)/client/kb_output.o \
		$(B)/client/ctl_socket.o $(B)/client/ctl_session.o \
		$(B)/client/ctl_keys.o \
		$(A_BROKER) $(A_PKCS11) $(A_CONFIG) $(A_COMMON)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(B)/keybroker: $(B)/client/keybroker.o $(B)/client/kb_output.o \
		$(B)/client/kb_byok.o $(B)/common/kb_pkey.o \
		$(B)/common/kb_secret.o $(B)/libkeybroker.a
	$(CC) $(LDFLAGS) -o $@ $^ $(shell pkg-config --libs libcrypto) -lpthread

# The auditor's tool: reads trails on any machine, needs no token.
AUDIT_TOOL = client/keybroker-audit.c client/audit_verify.c \
	client/audit_status.c client/audit_records.c client/audit_query.c \
	client/audit_report.c client/ctl_session.c client/ctl_socket.c \
	client/kb_output.c
$(B)/keybroker-audit: $(call obj,$(AUDIT_TOOL)) $(B)/libkeybroker.a \
		$(A_COMMON)
	$(CC) $(LDFLAGS) -o $@ $^ $(shell pkg-config --libs libcrypto jansson) \
		-lpthread

$(B)/libkeybroker.a: $(CLIENT_OBJS)
	rm -f $@
	ar rcs $@ $^

$(B)/libkeybroker.so.0: $(CLIENT_OBJS)
	$(CC) $(LDFLAGS) -shared -Wl,-soname,libkeybroker.so.0 \
		-Wl,--version-script=client/libkeybroker.map -o $@ $^ -lpthread

# ---- tests ----
UNIT_TESTS = test_b64 test_kid test_config test_proto test_oaep test_acl \
	test_jwt test_peer test_jread test_pkcs1 test_ct test_output test_conn \
	test_ops test_buf test_duration test_trail test_sessions test_json
UNIT_BINS = $(addprefix $(B)/tests/,$(UNIT_TESTS))
UNIT_RUN = $(UNIT_BINS) $(if $(SANITIZE),,$(B)/tests/test_ct_clang)
CMOCKA_LIBS = $(shell pkg-config --libs cmocka)

$(B)/tests/test_b64: $(B)/tests/unit/test_b64.o $(call obj,common/kb_b64.c)
$(B)/tests/test_kid: $(B)/tests/unit/test_kid.o $(call obj,common/kb_kid.c)
$(B)/tests/test_buf: $(B)/tests/unit/test_buf.o $(call obj,common/kb_buf.c)
$(B)/tests/test_duration: $(B)/tests/unit/test_duration.o \
	$(call obj,common/kb_duration.c)
$(B)/tests/test_trail: $(B)/tests/unit/test_trail.o \
	$(call obj,common/kb_trail.c common/kb_b64.c common/kb_kid.c)
$(B)/tests/test_config: $(B)/tests/unit/test_config.o \
	$(call obj,$(CONFIG) common/kb_kid.c common/kb_log.c common/kb_grant.c \
	common/kb_jws.c common/kb_duration.c)
$(B)/tests/test_proto: $(B)/tests/unit/test_proto.o $(A_BROKER) $(A_PKCS11) \
	$(A_CONFIG) $(A_COMMON)
$(B)/tests/test_acl: $(B)/tests/unit/test_acl.o \
	$(call obj,broker/kb_acl.c common/kb_grant.c)
$(B)/tests/test_peer: $(B)/tests/unit/test_peer.o $(call obj,broker/kb_peer.c)
$(B)/tests/test_sessions: $(B)/tests/unit/test_sessions.o \
	$(call obj,broker/kb_sessions.c)
$(B)/tests/test_json: $(B)/tests/unit/test_json.o \
	$(call obj,common/kb_json.c common/kb_buf.c)
$(B)/tests/test_conn: $(B)/tests/unit/test_conn.o $(A_BROKER) $(A_PKCS11) \
	$(A_CONFIG) $(A_COMMON)
$(B)/tests/test_ops: $(B)/tests/unit/test_ops.o $(A_BROKER) $(A_PKCS11) \
	$(A_CONFIG) $(A_COMMON)
$(B)/tests/test_jread: $(B)/tests/unit/test_jread.o $(call obj,client/kb_jread.c)
$(B)/tests/test_output: $(B)/tests/unit/test_output.o $(call obj,client/kb_output.c)
$(B)/tests/test_pkcs1: $(B)/tests/unit/test_pkcs1.o $(call obj,common/kb_pkcs1.c)
$(B)/tests/unit/test_pkcs1.o: CPPFLAGS += -DTEST_DATA='"$(CURDIR)/tests/unit/data"'
$(B)/tests/test_jwt: $(B)/tests/unit/test_jwt.o \
	$(call obj,broker/kb_jwt.c broker/kb_jwk.c common/kb_b64.c common/kb_kid.c \
	common/kb_json.c common/kb_buf.c common/kb_jws.c common/kb_error.c \
	common/kb_log.c common/kb_pkey.c)
$(B)/tests/test_oaep: $(B)/tests/unit/test_oaep.o \
	$(call obj,common/kb_oaep.c common/kb_secret.c)
CT_SOURCES = common/kb_b64.c common/kb_pkcs1.c common/kb_oaep.c \
	common/kb_secret.c
$(B)/tests/test_ct: $(B)/tests/unit/test_ct.o $(call obj,$(CT_SOURCES))

# The same constant-time check on what clang makes of the code (it turns
# more selections into branches than gcc does); not in sanitizer builds.
$(B)/tests/test_ct_clang: tests/unit/test_ct.c $(CT_SOURCES)
	@mkdir -p $(dir $@)
	clang $(CPPFLAGS) -O2 -gdwarf-4 -Wno-unused-command-line-argument \
		$(shell pkg-config --cflags $(PKGS)) -o $@ $^ $(LIBS) \
		$(CMOCKA_LIBS)

$(UNIT_BINS):
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) $(CMOCKA_LIBS)

$(B)/tests/kb_bench: $(B)/tests/bench/kb_bench.o $(B)/libkeybroker.a \
		$(A_BROKER) $(A_PKCS11) $(A_CONFIG) $(A_COMMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# ---- fuzzing (clang libFuzzer + ASan/UBSan), bounded runs ----
FUZZ_SECONDS ?= 15
FZ = build-fuzz
FUZZ_CFLAGS = -g -O1 -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined $(CPPFLAGS) -Wno-unused-command-line-argument \
	$(shell pkg-config --cflags $(PKGS))
FUZZ_BINS = $(FZ)/fuzz_proto $(FZ)/fuzz_kid $(FZ)/fuzz_b64 $(FZ)/fuzz_oaep \
	$(FZ)/fuzz_acl $(FZ)/fuzz_jwt $(FZ)/fuzz_config $(FZ)/fuzz_jwks \
	$(FZ)/fuzz_meta $(FZ)/fuzz_reply $(FZ)/fuzz_audit

$(FZ)/fuzz_proto: tests/fuzz/fuzz_proto.c $(BROKER) $(PKCS11) $(CONFIG) $(COMMON)
$(FZ)/fuzz_kid: tests/fuzz/fuzz_kid.c common/kb_kid.c
$(FZ)/fuzz_b64: tests/fuzz/fuzz_b64.c common/kb_b64.c
$(FZ)/fuzz_acl: tests/fuzz/fuzz_acl.c common/kb_grant.c
$(FZ)/fuzz_jwt: tests/fuzz/fuzz_jwt.c broker/kb_jwt.c broker/kb_jwk.c common/kb_b64.c \
	common/kb_kid.c common/kb_json.c common/kb_buf.c common/kb_jws.c \
	common/kb_error.c common/kb_log.c common/kb_pkey.c
$(FZ)/fuzz_oaep: tests/fuzz/fuzz_oaep.c common/kb_oaep.c common/kb_pkcs1.c \
	common/kb_secret.c
$(FZ)/fuzz_config: tests/fuzz/fuzz_config.c $(CONFIG) common/kb_kid.c \
	common/kb_log.c common/kb_grant.c common/kb_jws.c common/kb_duration.c
$(FZ)/fuzz_jwks: tests/fuzz/fuzz_jwks.c broker/kb_jwk.c common/kb_b64.c \
	common/kb_json.c common/kb_buf.c common/kb_pkey.c
$(FZ)/fuzz_meta: tests/fuzz/fuzz_meta.c $(BROKER) $(PKCS11) $(CONFIG) $(COMMON)
$(FZ)/fuzz_reply: tests/fuzz/fuzz_reply.c $(CLIENTLIB)
$(FZ)/fuzz_audit: tests/fuzz/fuzz_audit.c client/audit_verify.c \
	client/audit_records.c client/audit_query.c client/audit_report.c \
	client/audit_status.c client/ctl_session.c client/ctl_socket.c \
	client/kb_output.c common/kb_trail.c common/kb_b64.c common/kb_kid.c \
	common/kb_json.c common/kb_buf.c common/kb_secret.c common/kb_grant.c

$(FUZZ_BINS):
	@mkdir -p $(FZ)
	clang $(FUZZ_CFLAGS) -o $@ $^ $(LIBS)

fuzz: $(FUZZ_BINS)
	@tests/fuzz/run.sh $(FZ) $(FUZZ_SECONDS)

# test_ct runs under valgrind (its constant-time check), but not in the
# sanitizer builds, which valgrind cannot run.
unit: $(UNIT_RUN)
	@KB_VALGRIND_CT=$(if $(SANITIZE),,1) tests/run-unit.sh $(UNIT_RUN)

# Preloaded into keybrokerd by tests; never sanitised (it wraps libc).
$(B)/tests/syscall_shim.so: tests/integration/syscall_shim.c
	@mkdir -p $(dir $@)
	$(CC) -shared -fPIC -O2 -Wall -D_GNU_SOURCE -o $@ $< -ldl

# The fault-injecting PKCS#11 module of the full-disk tests: loaded into
# the tools by path, in front of SoftHSMv2; never sanitised either.
$(B)/tests/p11_fault.so: tests/fault/p11_fault.c
	@mkdir -p $(dir $@)
	$(CC) -shared -fPIC -O2 -Wall -Wextra -D_GNU_SOURCE -fvisibility=hidden \
		$(shell pkg-config --cflags p11-kit-1) -o $@ $< -ldl -lpthread

# Fills a token with many key versions fast, for the big-catalogue tests.
$(B)/tests/p11_populate: tests/integration/p11_populate.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -Wall -Wextra $(shell pkg-config --cflags p11-kit-1) -o $@ $< -ldl

integration: all $(B)/tests/syscall_shim.so $(B)/tests/p11_fault.so \
		$(B)/tests/p11_populate
	@KB_CLIENT_CFLAGS="$(SANFLAGS)" tests/integration/run.sh $(B)

# The whole suite: unit, integration and interop tests, plain and then
# under AddressSanitizer + UBSan.
check: unit integration

check-asan:
	$(MAKE) B=build-asan SANITIZE=1 check

# The integration suite (where the threads are) under ThreadSanitizer.
check-tsan:
	$(MAKE) B=build-tsan SANITIZE=thread integration

test: check check-asan check-tsan

bench: all $(B)/tests/kb_bench $(B)/tests/p11_fault.so
	@tests/bench/run.sh $(B)

# ---- lint ----
SOURCES = $(shell git ls-files --cached --others --exclude-standard '*.c' '*.h' 2>/dev/null || \
	find . -name '*.[ch]' -not -path './build*')
lint: all
	clang-format --dry-run -Werror $(SOURCES)
	sh scripts/check-layers.sh $(B)
	cppcheck --quiet --error-exitcode=1 --std=c11 --inline-suppr \
		--enable=warning,portability,performance \
		--suppress=missingIncludeSystem -D__GNUC__ \
		-Icommon -Iconfig -Ipkcs11 -Ibroker -Iclient $(SOURCES)

format:
	clang-format -i $(SOURCES)

# ---- install ----
MAN1 = docs/man/keybroker.1 docs/man/keybroker-audit.1
MAN3 = docs/man/libkeybroker.3
MAN5 = docs/man/keybroker.conf.5
MAN8 = docs/man/keybrokerd.8 docs/man/keybrokerctl.8
MANPAGES = $(MAN1) $(MAN3) $(MAN5) $(MAN8)

install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) \
		$(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) \
		$(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(SYSTEMDUNITDIR) \
		$(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) \
		$(DESTDIR)$(EXAMPLESDIR) $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(MANDIR)/man3 $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(MANDIR)/man8
	install -m 0755 $(B)/keybrokerd $(DESTDIR)$(SBINDIR)/keybrokerd
	install -m 0755 $(B)/keybrokerctl $(DESTDIR)$(SBINDIR)/keybrokerctl
	install -m 0755 $(B)/keybroker $(DESTDIR)$(BINDIR)/keybroker
	install -m 0755 $(B)/keybroker-audit $(DESTDIR)$(BINDIR)/keybroker-audit
	install -m 0644 $(B)/libkeybroker.a $(DESTDIR)$(LIBDIR)/
	install -m 0644 $(B)/libkeybroker.so.0 $(DESTDIR)$(LIBDIR)/
	ln -sf libkeybroker.so.0 $(DESTDIR)$(LIBDIR)/libkeybroker.so
	install -m 0644 client/keybroker.h $(DESTDIR)$(INCLUDEDIR)/keybroker.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' \
	    client/keybroker.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/keybroker.pc
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' systemd/keybrokerd.service.in \
		> $(DESTDIR)$(SYSTEMDUNITDIR)/keybrokerd.service
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/keybrokerd.service
	install -m 0644 systemd/keybrokerd.socket $(DESTDIR)$(SYSTEMDUNITDIR)/
	install -m 0644 systemd/sysusers.d/keybroker.conf \
		$(DESTDIR)$(SYSUSERSDIR)/keybroker.conf
	install -m 0644 systemd/tmpfiles.d/keybroker.conf \
		$(DESTDIR)$(TMPFILESDIR)/keybroker.conf
	install -m 0644 config/system/keybroker.conf \
		config/system/softhsm2.conf systemd/examples/device-hsm.conf \
		systemd/examples/network-hsm.conf $(DESTDIR)$(EXAMPLESDIR)/
	install -m 0644 $(MAN1) $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 $(MAN3) $(DESTDIR)$(MANDIR)/man3/
	install -m 0644 $(MAN5) $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 $(MAN8) $(DESTDIR)$(MANDIR)/man8/

# The Debian packages, built, checked with lintian, installed on this
# machine, run and purged (root; tests/package/test-deb.sh).
deb-test:
	@sh tests/package/test-deb.sh

clean:
	rm -rf build build-asan build-tsan build-fuzz build-deb

.PHONY: all unit integration check check-asan check-tsan test bench fuzz lint \
	format install clean deb-test

-include $(shell find $(B) -name '*.d' 2>/dev/null)
