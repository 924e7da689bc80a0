// The rig's GCS peer: fake-gcs-server (as a library) behind what it lacks,
// the auth of the real service and the resumable-upload rules a real client
// must follow.
//
//   - POST /token: the OAuth 2.0 JWT-bearer grant. The assertion must be an
//     RS256 JWT signed by the rig's service account (checked against its
//     public key), for this token URI, with a devstorage scope and an
//     unexpired exp. Issues an opaque bearer token with a configurable
//     lifetime.
//   - Every other request (the JSON API) needs a valid, unexpired bearer
//     token, or gets GCS's JSON 401. A bucket that does not exist is GCS's
//     404 "The specified bucket does not exist.".
//   - Resumable uploads: each chunk but the last is a multiple of 256 KiB,
//     starts where the previous one ended (a resent chunk's overlap is
//     dropped, as GCS does), and "bytes */*" asks how much was persisted.
//
// Test controls (loopback only, no auth): GET /_rig/stats, POST
// /_rig/ttl?seconds=N, /_rig/revoke (tokens issued so far stop working),
// /_rig/reject?on=1|0 (every token is refused), /_rig/fail?n=N (the next N
// storage requests get 503), /_rig/bucket?name=B (creates a bucket).
package main

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"
)

const chunkQuantum = 256 * 1024

type token struct {
	expires time.Time
	revoked bool
}

type peer struct {
	fake     *fakestorage.Server
	handler  http.Handler
	pub      *rsa.PublicKey
	email    string
	tokenURI string

	mu       sync.Mutex
	ttl      int
	tokens   map[string]*token
	reject   bool
	fail     int
	uploads  map[string]int64 // upload_id -> bytes persisted
	issued   int
	refused  int
	requests int
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	keyFile := flag.String("key", "", "PEM RSA private key of the rig's service account")
	account := flag.String("account", "", "where to write the account's JSON key file (token_uri: this peer)")
	bucket := flag.String("bucket", "kalua-rig", "bucket created at start")
	ttl := flag.Int("ttl", 3600, "lifetime of issued tokens, in seconds")
	flag.Parse()

	tokenURI := "http://" + *addr + "/token"
	pub, err := writeAccount(*keyFile, *account, tokenURI)
	if err != nil {
		log.Fatalf("gcs peer: %v", err)
	}
	fake, err := fakestorage.NewServerWithOptions(fakestorage.Options{NoListener: true, Scheme: "http"})
	if err != nil {
		log.Fatalf("gcs peer: %v", err)
	}
	fake.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: *bucket})
	p := &peer{
		fake: fake, handler: fake.HTTPHandler(), pub: pub, email: accountEmail,
		tokenURI: tokenURI,
		ttl:      *ttl, tokens: map[string]*token{}, uploads: map[string]int64{},
	}
	log.Printf("gcs peer on %s for %s, bucket %s", *addr, accountEmail, *bucket)
	log.Fatal(http.ListenAndServe(*addr, p))
}

const accountEmail = "kalua-backup@kalua-test.iam.gserviceaccount.com"

// Writes the service account's JSON key file, as Google issues them, and
// returns the public key its assertions must verify against.
func writeAccount(keyFile, account, tokenURI string) (*rsa.PublicKey, error) {
	pemText, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(pemText)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM private key", keyFile)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", keyFile, err)
	}
	rsaKey, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an RSA key", keyFile)
	}
	raw, _ := json.MarshalIndent(map[string]string{
		"type":           "service_account",
		"project_id":     "kalua-test",
		"private_key_id": "0123456789abcdef0123456789abcdef01234567",
		"private_key":    string(pemText),
		"client_email":   accountEmail,
		"client_id":      "100000000000000000001",
		"auth_uri":       "https://accounts.google.com/o/oauth2/auth",
		"token_uri":      tokenURI,
	}, "", "  ")
	if err := os.WriteFile(account, append(raw, '\n'), 0o600); err != nil {
		return nil, err
	}
	return &rsaKey.PublicKey, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// GCS's JSON error shape.
func gcsError(w http.ResponseWriter, status int, reason, message string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{
		"code": status, "message": message,
		"errors": []any{map[string]any{"domain": "global", "reason": reason, "message": message}},
	}})
}

func (p *peer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasPrefix(r.URL.Path, "/_rig/"):
		p.control(w, r)
	case r.URL.Path == "/token":
		p.token(w, r)
	default:
		p.storage(w, r)
	}
}

func (p *peer) control(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p.mu.Lock()
	defer p.mu.Unlock()
	switch r.URL.Path {
	case "/_rig/stats":
		writeJSON(w, 200, map[string]int{"tokens_issued": p.issued, "refused": p.refused, "requests": p.requests})
	case "/_rig/ttl":
		n, err := strconv.Atoi(q.Get("seconds"))
		if err != nil || n <= 0 {
			http.Error(w, "seconds=N", 400)
			return
		}
		p.ttl = n
		writeJSON(w, 200, map[string]int{"ttl": n})
	case "/_rig/revoke":
		for _, t := range p.tokens {
			t.revoked = true
		}
		writeJSON(w, 200, map[string]int{"revoked": len(p.tokens)})
	case "/_rig/reject":
		p.reject = q.Get("on") == "1"
		writeJSON(w, 200, map[string]bool{"reject": p.reject})
	case "/_rig/fail":
		n, _ := strconv.Atoi(q.Get("n"))
		p.fail = n
		writeJSON(w, 200, map[string]int{"fail": n})
	case "/_rig/bucket":
		name := q.Get("name")
		if name == "" {
			http.Error(w, "name=B", 400)
			return
		}
		p.fake.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: name})
		writeJSON(w, 200, map[string]string{"bucket": name})
	default:
		http.NotFound(w, r)
	}
}

func oauthError(w http.ResponseWriter, status int, code, description string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": description})
}

func (p *peer) token(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		oauthError(w, 405, "invalid_request", "POST only")
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(w, 400, "invalid_request", err.Error())
		return
	}
	if r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		oauthError(w, 400, "unsupported_grant_type", "Invalid grant_type: "+r.PostForm.Get("grant_type"))
		return
	}
	if err := p.checkAssertion(r.PostForm.Get("assertion")); err != nil {
		p.mu.Lock()
		p.refused++
		p.mu.Unlock()
		oauthError(w, 400, "invalid_grant", err.Error())
		return
	}
	var raw [24]byte
	_, _ = rand.Read(raw[:])
	access := "ya29.rig-" + hex.EncodeToString(raw[:])
	p.mu.Lock()
	ttl := p.ttl
	p.tokens[access] = &token{expires: time.Now().Add(time.Duration(ttl) * time.Second)}
	p.issued++
	p.mu.Unlock()
	writeJSON(w, 200, map[string]any{"access_token": access, "expires_in": ttl, "token_type": "Bearer"})
}

func (p *peer) checkAssertion(jwt string) error {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return fmt.Errorf("Invalid JWT: Token must be a short-lived token and in a reasonable timeframe")
	}
	var header struct {
		Alg string `json:"alg"`
		Typ string `json:"typ"`
	}
	var claims struct {
		Iss   string `json:"iss"`
		Scope string `json:"scope"`
		Aud   string `json:"aud"`
		Iat   int64  `json:"iat"`
		Exp   int64  `json:"exp"`
	}
	if err := decodePart(parts[0], &header); err != nil || header.Alg != "RS256" {
		return fmt.Errorf("Invalid JWT header")
	}
	if err := decodePart(parts[1], &claims); err != nil {
		return fmt.Errorf("Invalid JWT claims")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return fmt.Errorf("Invalid JWT Signature.")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(p.pub, crypto.SHA256, digest[:], sig) != nil {
		return fmt.Errorf("Invalid JWT Signature.")
	}
	now := time.Now().Unix()
	switch {
	case claims.Iss != p.email:
		return fmt.Errorf("Invalid issuer: %s", claims.Iss)
	case claims.Aud != p.tokenURI:
		return fmt.Errorf("Invalid JWT: audience must be %s", p.tokenURI)
	case !strings.Contains(claims.Scope, "https://www.googleapis.com/auth/devstorage."):
		return fmt.Errorf("Invalid OAuth scope or ID token audience provided.")
	case claims.Exp <= now || claims.Iat > now+60 || claims.Exp-claims.Iat > 3600:
		return fmt.Errorf("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.")
	}
	return nil
}

func decodePart(s string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}

// The bucket a JSON API path names, or "".
func bucketOf(path string) string {
	for _, prefix := range []string{"/storage/v1/b/", "/upload/storage/v1/b/", "/download/storage/v1/b/"} {
		if strings.HasPrefix(path, prefix) {
			rest := path[len(prefix):]
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				rest = rest[:i]
			}
			b, _ := url.PathUnescape(rest)
			return b
		}
	}
	return ""
}

func (p *peer) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	if !strings.HasPrefix(h, "Bearer ") {
		return false
	}
	t, ok := p.tokens[strings.TrimPrefix(h, "Bearer ")]
	return ok && !p.reject && !t.revoked && time.Now().Before(t.expires)
}

func (p *peer) storage(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.requests++
	ok := p.authorized(r)
	failing := p.fail > 0
	if failing {
		p.fail--
	}
	p.mu.Unlock()
	if failing {
		gcsError(w, 503, "backendError", "Backend Error (injected by the rig)")
		return
	}
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://accounts.google.com/"`)
		gcsError(w, 401, "authError", "Invalid Credentials")
		return
	}
	if b := bucketOf(r.URL.EscapedPath()); b != "" && r.URL.Path != "/storage/v1/b/"+b {
		if _, err := p.fake.Backend().GetBucket(b); err != nil {
			gcsError(w, 404, "notFound", "The specified bucket does not exist.")
			return
		}
	}
	if id := r.URL.Query().Get("upload_id"); id != "" && r.Method == http.MethodPut {
		p.chunk(w, r, id)
		return
	}
	p.handler.ServeHTTP(w, r)
}

// One PUT to a resumable session, checked as GCS checks it.
func (p *peer) chunk(w http.ResponseWriter, r *http.Request, id string) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // a dropped connection: nothing persisted
	}
	cr := r.Header.Get("Content-Range")
	first, last, total, ok := parseRange(cr)
	if !ok {
		gcsError(w, 400, "invalid", "Failed to parse Content-Range header.")
		return
	}
	p.mu.Lock()
	have := p.uploads[id]
	p.mu.Unlock()
	if first < 0 { // "bytes */T" (finish) or "bytes */*" (how much is persisted?)
		switch {
		case len(body) != 0:
			gcsError(w, 400, "invalid", "Content-Range bytes */N carries no body")
			return
		case total < 0:
			persisted(w, have)
			return
		case total != have:
			gcsError(w, 400, "invalid", fmt.Sprintf("Invalid request. The final size %d does not match the %d bytes uploaded.", total, have))
			return
		}
	} else {
		if int64(len(body)) != last-first+1 {
			gcsError(w, 400, "invalid", "Content-Range does not match the body's length")
			return
		}
		if first > have {
			gcsError(w, 400, "invalid", fmt.Sprintf("Invalid request. According to the Content-Range header, the upload offset is %d byte(s), which exceeds already uploaded size of %d byte(s).", first, have))
			return
		}
		if total < 0 && (last+1)%chunkQuantum != 0 {
			gcsError(w, 400, "invalid", "Invalid request. The number of bytes uploaded is required to be equal or greater than 262144, except for the final request (it's recommended to be the exact multiple of 262144).")
			return
		}
		skip := have - first // a resent chunk: GCS keeps what it has
		if skip > int64(len(body)) {
			skip = int64(len(body))
		}
		body = body[skip:]
		switch {
		case len(body) > 0:
			cr = fmt.Sprintf("bytes %d-%d/%s", have, last, totalText(total))
		case total < 0:
			persisted(w, have)
			return
		default:
			cr = "bytes */" + totalText(total)
		}
	}
	final := total >= 0
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.Header.Set("Content-Range", cr)
	rec := &recorder{header: http.Header{}, status: 200}
	p.handler.ServeHTTP(rec, r)
	if rec.status < 300 || rec.status == http.StatusPermanentRedirect {
		p.mu.Lock()
		if final {
			delete(p.uploads, id)
		} else {
			p.uploads[id] = last + 1
		}
		p.mu.Unlock()
	}
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.status)
	_, _ = w.Write(rec.body.Bytes())
}

// GCS's answer to an unfinished upload: 308 and the bytes it holds.
func persisted(w http.ResponseWriter, have int64) {
	if have > 0 {
		w.Header().Set("Range", fmt.Sprintf("bytes=0-%d", have-1))
	}
	w.WriteHeader(http.StatusPermanentRedirect)
}

func totalText(total int64) string {
	if total < 0 {
		return "*"
	}
	return strconv.FormatInt(total, 10)
}

// "bytes a-b/T", "bytes a-b/*", "bytes */T", "bytes */*" (first < 0: no range;
// total < 0: unknown).
func parseRange(s string) (first, last, total int64, ok bool) {
	s, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, tot, found := strings.Cut(s, "/")
	if !found {
		return 0, 0, 0, false
	}
	total = -1
	if tot != "*" {
		t, err := strconv.ParseInt(tot, 10, 64)
		if err != nil {
			return 0, 0, 0, false
		}
		total = t
	}
	if rng == "*" {
		return -1, -1, total, true
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	first, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || first > last || (total >= 0 && last >= total) {
		return 0, 0, 0, false
	}
	return first, last, total, true
}

type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(status int)      { r.status = status }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
