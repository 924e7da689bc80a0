/* A GSSAPI (RFC 4752) server side for specs, speaking lines:
 *
 *   stdin   T <hex>            a client token (empty hex: an empty message)
 *   stdout  T <hex>            a server token
 *           A <client> <authzid>   authenticated (the final, empty server message)
 *           E <message>        refused; exits 1
 *
 *   gss_acceptor KEYTAB [LAYERS]
 *
 * Accepts with KEYTAB (any service principal in it), then proposes the
 * security layers LAYERS (default 0x01: none) with a max size of 0x100000,
 * and checks that the client's wrapped reply chooses layer 0x01.
 * Independent of kalua: MIT krb5's GSSAPI only.
 *
 *   cc -o gss_acceptor gss_acceptor.c $(pkg-config --cflags --libs krb5-gssapi) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gssapi/gssapi.h>
#include <gssapi/gssapi_ext.h>
#include <gssapi/gssapi_krb5.h>

static void die(const char *what, OM_uint32 major, OM_uint32 minor) {
  OM_uint32 m, ctx = 0;
  gss_buffer_desc a = GSS_C_EMPTY_BUFFER, b = GSS_C_EMPTY_BUFFER;
  gss_display_status(&m, major, GSS_C_GSS_CODE, GSS_C_NO_OID, &ctx, &a);
  ctx = 0;
  if (minor) gss_display_status(&m, minor, GSS_C_MECH_CODE, (gss_OID)gss_mech_krb5, &ctx, &b);
  printf("E %s: %.*s; %.*s\n", what, (int)a.length, (char *)a.value, (int)b.length, (char *)b.value);
  exit(1);
}

static void refuse(const char *msg) {
  printf("E %s\n", msg);
  exit(1);
}

/* Reads one "T <hex>" line into buf; 0 at end of input. */
static int read_token(gss_buffer_desc *buf) {
  static char line[65536];
  static unsigned char data[32768];
  size_t n, i;
  if (fgets(line, sizeof line, stdin) == NULL) return 0;
  n = strcspn(line, "\r\n");
  line[n] = '\0';
  if (n < 1 || line[0] != 'T') refuse("expected a T line");
  const char *hex = line[1] == ' ' ? line + 2 : line + 1;
  n = strlen(hex) / 2;
  for (i = 0; i < n; i++) {
    unsigned int v;
    if (sscanf(hex + 2 * i, "%2x", &v) != 1) refuse("bad hex");
    data[i] = (unsigned char)v;
  }
  buf->value = data;
  buf->length = n;
  return 1;
}

static void write_token(const gss_buffer_desc *buf) {
  size_t i;
  fputs("T ", stdout);
  for (i = 0; i < buf->length; i++) printf("%02x", ((unsigned char *)buf->value)[i]);
  fputc('\n', stdout);
  fflush(stdout);
}

int main(int argc, char **argv) {
  OM_uint32 major, minor, ret_flags = 0;
  gss_cred_id_t cred = GSS_C_NO_CREDENTIAL;
  gss_ctx_id_t ctx = GSS_C_NO_CONTEXT;
  gss_name_t client = GSS_C_NO_NAME;
  gss_buffer_desc in, out = GSS_C_EMPTY_BUFFER, name = GSS_C_EMPTY_BUFFER;
  gss_key_value_element_desc element;
  gss_key_value_set_desc store = {1, &element};
  unsigned char proposal[4] = {0x01, 0x10, 0x00, 0x00};
  const unsigned char *reply;
  if (argc < 2) {
    fprintf(stderr, "usage: gss_acceptor KEYTAB [LAYERS]\n");
    return 2;
  }
  if (argc > 2) proposal[0] = (unsigned char)strtoul(argv[2], NULL, 0);
  setvbuf(stdout, NULL, _IOLBF, 0);
  element.key = "keytab";
  element.value = argv[1];
  major = gss_acquire_cred_from(&minor, GSS_C_NO_NAME, GSS_C_INDEFINITE, GSS_C_NO_OID_SET, GSS_C_ACCEPT, &store, &cred,
                                NULL, NULL);
  if (GSS_ERROR(major)) die("acquire_cred_from", major, minor);

  /* Context rounds until established. */
  do {
    if (!read_token(&in)) return 1;
    major = gss_accept_sec_context(&minor, &ctx, cred, &in, GSS_C_NO_CHANNEL_BINDINGS, &client, NULL, &out, &ret_flags,
                                   NULL, NULL);
    if (GSS_ERROR(major)) die("accept_sec_context", major, minor);
    if (out.length) write_token(&out);
    gss_release_buffer(&minor, &out);
  } while (major & GSS_S_CONTINUE_NEEDED);
  if (!(ret_flags & GSS_C_MUTUAL_FLAG)) refuse("the client did not ask for mutual authentication");

  /* The turnaround: the client's empty message after the AP-REP. */
  if (!read_token(&in)) return 1;
  if (in.length != 0) refuse("expected the client's empty turnaround message");

  in.value = proposal;
  in.length = sizeof proposal;
  major = gss_wrap(&minor, ctx, 0, GSS_C_QOP_DEFAULT, &in, NULL, &out);
  if (GSS_ERROR(major)) die("wrap", major, minor);
  write_token(&out);
  gss_release_buffer(&minor, &out);

  if (!read_token(&in)) return 1;
  major = gss_unwrap(&minor, ctx, &in, &out, NULL, NULL);
  if (GSS_ERROR(major)) die("unwrap", major, minor);
  reply = out.value;
  if (out.length < 4) refuse("the client's reply is shorter than 4 bytes");
  if (reply[0] != 0x01 || reply[1] || reply[2] || reply[3]) refuse("the client chose a layer other than 0x01 (none)");
  if (!(proposal[0] & 0x01)) refuse("the client chose a layer that was not offered");
  major = gss_display_name(&minor, client, &name, NULL);
  if (GSS_ERROR(major)) die("display_name", major, minor);
  printf("A %.*s %.*s\n", (int)name.length, (char *)name.value, (int)(out.length - 4), (const char *)reply + 4);
  gss_release_buffer(&minor, &name);
  gss_release_buffer(&minor, &out);
  gss_release_name(&minor, &client);
  gss_delete_sec_context(&minor, &ctx, GSS_C_NO_BUFFER);
  gss_release_cred(&minor, &cred);
  return 0;
}
