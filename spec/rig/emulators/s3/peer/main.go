// s3peer: an S3 emulator for kalua's specs. gofakes3 (in memory) speaks the
// S3 REST protocol; in front of it this program checks every request's AWS
// Signature V4 (header or presigned query) with the AWS SDK's own signer,
// checks x-amz-content-sha256 against the body, and injects faults on
// demand. It also serves the ECS container-credentials and EC2 IMDSv2
// endpoints, handing out a second, temporary key pair with a session token.
//
// Control endpoints (no signature):
//
//	POST /__faults {"status":503,"count":2,"method":"PUT","path":"..."}   answer with status
//	POST /__faults {"drop":1,"method":"PUT"}                              cut the connection mid-body
//	POST /__faults {"stall_ms":3000,"count":1}                            stall before answering
//	DELETE /__faults                                                      clear
//	GET /__log, DELETE /__log                                             requests seen (method, path, query, x-amz headers)
//	GET /__creds/container                                                ECS credentials (needs Authorization if set)
//	PUT /latest/api/token, GET /latest/meta-data/iam/security-credentials/[role]   IMDSv2
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

type fault struct {
	Status  int    `json:"status"`
	Drop    int    `json:"drop"`
	StallMs int    `json:"stall_ms"`
	Count   int    `json:"count"`
	Method  string `json:"method"`
	Path    string `json:"path"` // substring of the path
	Query   string `json:"query"` // substring of the raw query
}

type logEntry struct {
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Query   string            `json:"query"`
	Headers map[string]string `json:"headers"`
	Status  int               `json:"status"`
	Length  int               `json:"length"`
}

type peer struct {
	region    string
	keys      map[string]aws.Credentials // access key -> credentials
	temp      aws.Credentials
	ecsToken  string
	s3        http.Handler
	mu        sync.Mutex
	faults    []*fault
	log       []logEntry
	imdsToken string
}

func s3error(w http.ResponseWriter, status int, code, message string) {
	type errorXML struct {
		XMLName   xml.Name `xml:"Error"`
		Code      string   `xml:"Code"`
		Message   string   `xml:"Message"`
		RequestID string   `xml:"RequestId"`
	}
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	out, _ := xml.Marshal(errorXML{Code: code, Message: message, RequestID: "kalua-peer"})
	w.Write([]byte(xml.Header))
	w.Write(out)
}

// takeFault returns the first armed fault matching r, counting it down.
func (p *peer) takeFault(r *http.Request) *fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, f := range p.faults {
		if f.Method != "" && f.Method != r.Method {
			continue
		}
		if f.Path != "" && !strings.Contains(r.URL.Path, f.Path) {
			continue
		}
		if f.Query != "" && !strings.Contains(r.URL.RawQuery, f.Query) {
			continue
		}
		f.Count--
		if f.Count <= 0 {
			p.faults = append(p.faults[:i], p.faults[i+1:]...)
		}
		c := *f
		return &c
	}
	return nil
}

func (p *peer) control(w http.ResponseWriter, r *http.Request) bool {
	switch {
	case r.URL.Path == "/__faults" && r.Method == "POST":
		var f fault
		if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
			http.Error(w, err.Error(), 400)
			return true
		}
		if f.Count <= 0 {
			f.Count = 1
		}
		if f.Drop > 0 && f.Count < f.Drop {
			f.Count = f.Drop
		}
		p.mu.Lock()
		p.faults = append(p.faults, &f)
		p.mu.Unlock()
		w.WriteHeader(204)
	case r.URL.Path == "/__faults" && r.Method == "DELETE":
		p.mu.Lock()
		p.faults = nil
		p.mu.Unlock()
		w.WriteHeader(204)
	case r.URL.Path == "/__log" && r.Method == "GET":
		p.mu.Lock()
		out, _ := json.Marshal(p.log)
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(out)
	case r.URL.Path == "/__log" && r.Method == "DELETE":
		p.mu.Lock()
		p.log = nil
		p.mu.Unlock()
		w.WriteHeader(204)
	case r.URL.Path == "/__creds/container":
		if p.ecsToken != "" && r.Header.Get("Authorization") != p.ecsToken {
			http.Error(w, "bad container authorization token", 401)
			return true
		}
		p.writeCreds(w)
	case r.URL.Path == "/latest/api/token" && r.Method == "PUT":
		if r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") == "" {
			http.Error(w, "missing ttl", 400)
			return true
		}
		w.Write([]byte(p.imdsToken))
	case strings.HasPrefix(r.URL.Path, "/latest/meta-data/iam/security-credentials"):
		if r.Header.Get("X-aws-ec2-metadata-token") != p.imdsToken {
			http.Error(w, "IMDSv2 token required", 401)
			return true
		}
		role := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/latest/meta-data/iam/security-credentials"), "/")
		if role == "" {
			w.Write([]byte("kalua-role\n"))
		} else if role == "kalua-role" {
			p.writeCreds(w)
		} else {
			http.NotFound(w, r)
		}
	default:
		return false
	}
	return true
}

func (p *peer) writeCreds(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{
		"Code":            "Success",
		"Type":            "AWS-HMAC",
		"AccessKeyId":     p.temp.AccessKeyID,
		"SecretAccessKey": p.temp.SecretAccessKey,
		"Token":           p.temp.SessionToken,
		"Expiration":      time.Now().Add(6 * time.Hour).UTC().Format(time.RFC3339),
		"LastUpdated":     time.Now().UTC().Format(time.RFC3339),
	})
}

type authParts struct {
	accessKey, date, region, service string
	signedHeaders                    []string
	signature                        string
}

func parseAuthorization(h string) (authParts, bool) {
	var a authParts
	const alg = "AWS4-HMAC-SHA256 "
	if !strings.HasPrefix(h, alg) {
		return a, false
	}
	for _, part := range strings.Split(h[len(alg):], ",") {
		kv := strings.SplitN(strings.TrimSpace(part), "=", 2)
		if len(kv) != 2 {
			return a, false
		}
		switch kv[0] {
		case "Credential":
			scope := strings.Split(kv[1], "/")
			if len(scope) != 5 || scope[4] != "aws4_request" {
				return a, false
			}
			a.accessKey, a.date, a.region, a.service = scope[0], scope[1], scope[2], scope[3]
		case "SignedHeaders":
			a.signedHeaders = strings.Split(kv[1], ";")
		case "Signature":
			a.signature = kv[1]
		}
	}
	return a, a.accessKey != "" && a.signature != "" && len(a.signedHeaders) > 0
}

// verify checks r's signature; on failure it writes the S3 error and
// returns false. body is the whole request body.
func (p *peer) verify(w http.ResponseWriter, r *http.Request, body []byte) bool {
	q := r.URL.Query()
	presigned := q.Get("X-Amz-Algorithm") != ""
	var a authParts
	var amzDate string
	if presigned {
		scope := strings.Split(q.Get("X-Amz-Credential"), "/")
		if q.Get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256" || len(scope) != 5 {
			s3error(w, 400, "AuthorizationQueryParametersError", "malformed presigned query")
			return false
		}
		a = authParts{accessKey: scope[0], date: scope[1], region: scope[2], service: scope[3],
			signedHeaders: strings.Split(q.Get("X-Amz-SignedHeaders"), ";"), signature: q.Get("X-Amz-Signature")}
		amzDate = q.Get("X-Amz-Date")
	} else {
		var ok bool
		if a, ok = parseAuthorization(r.Header.Get("Authorization")); !ok {
			s3error(w, 403, "AccessDenied", "Access Denied: the request is not signed with AWS Signature V4")
			return false
		}
		amzDate = r.Header.Get("X-Amz-Date")
	}
	creds, known := p.keys[a.accessKey]
	if !known {
		s3error(w, 403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
		return false
	}
	if a.region != p.region || a.service != "s3" {
		s3error(w, 400, "AuthorizationHeaderMalformed",
			fmt.Sprintf("the region '%s' is wrong; expecting '%s'", a.region, p.region))
		return false
	}
	t, err := time.Parse("20060102T150405Z", amzDate)
	if err != nil || !strings.HasPrefix(amzDate, a.date) {
		s3error(w, 403, "AccessDenied", "X-Amz-Date is missing or does not match the credential scope")
		return false
	}
	if presigned {
		var expires int
		fmt.Sscan(q.Get("X-Amz-Expires"), &expires)
		if expires <= 0 || time.Now().After(t.Add(time.Duration(expires)*time.Second)) {
			s3error(w, 403, "AccessDenied", "Request has expired")
			return false
		}
	} else if d := time.Since(t); d > 15*time.Minute || d < -15*time.Minute {
		s3error(w, 403, "RequestTimeTooSkewed", "The difference between the request time and the current time is too large.")
		return false
	}
	if creds.SessionToken != "" {
		token := r.Header.Get("X-Amz-Security-Token")
		if presigned {
			token = q.Get("X-Amz-Security-Token")
		}
		if token != creds.SessionToken {
			s3error(w, 403, "InvalidToken", "The provided token is malformed or otherwise invalid.")
			return false
		}
	}
	payloadHash := "UNSIGNED-PAYLOAD"
	if !presigned {
		payloadHash = r.Header.Get("X-Amz-Content-Sha256")
		sum := sha256.Sum256(body)
		if payloadHash == "" {
			s3error(w, 400, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
			return false
		}
		if payloadHash != "UNSIGNED-PAYLOAD" && payloadHash != hex.EncodeToString(sum[:]) {
			s3error(w, 400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.")
			return false
		}
		for _, h := range []string{"x-amz-content-sha256", "x-amz-date", "host"} {
			if !contains(a.signedHeaders, h) {
				s3error(w, 403, "AccessDenied", "SignedHeaders must include "+h)
				return false
			}
		}
		for name := range r.Header {
			l := strings.ToLower(name)
			if strings.HasPrefix(l, "x-amz-") && !contains(a.signedHeaders, l) {
				s3error(w, 403, "AccessDenied", "There were headers present in the request which were not signed: "+l)
				return false
			}
		}
	}

	// Re-sign a copy holding only the headers the client signed.
	u := &url.URL{Scheme: "http", Host: r.Host, Opaque: "//" + r.Host + r.URL.EscapedPath()}
	cq := url.Values{}
	for k, v := range q {
		if k != "X-Amz-Signature" {
			cq[k] = v
		}
	}
	u.RawQuery = cq.Encode()
	clone, _ := http.NewRequest(r.Method, u.String(), nil)
	clone.URL = u
	clone.Host = r.Host
	for _, h := range a.signedHeaders {
		switch h {
		case "host":
		case "content-length":
			clone.ContentLength = r.ContentLength
		default:
			clone.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	signer := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
	var got string
	if presigned {
		signed, _, err := signer.PresignHTTP(context.Background(), creds, clone, payloadHash, "s3", p.region, t)
		if err == nil {
			if su, err := url.Parse(signed); err == nil {
				got = su.Query().Get("X-Amz-Signature")
			}
		}
	} else {
		clone.Header.Del("X-Amz-Security-Token") // the signer adds it from creds
		if err := signer.SignHTTP(context.Background(), creds, clone, payloadHash, "s3", p.region, t); err == nil {
			if parsed, ok := parseAuthorization(clone.Header.Get("Authorization")); ok {
				got = parsed.signature
			}
		}
	}
	if got == "" || got != a.signature {
		s3error(w, 403, "SignatureDoesNotMatch",
			"The request signature we calculated does not match the signature you provided. Check your key and signing method.")
		return false
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(s int) {
	r.status = s
	r.ResponseWriter.WriteHeader(s)
}

func (p *peer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.control(w, r) {
		return
	}
	f := p.takeFault(r)
	if f != nil && f.StallMs > 0 {
		select {
		case <-time.After(time.Duration(f.StallMs) * time.Millisecond):
		case <-r.Context().Done():
			return
		}
	}
	if f != nil && f.Drop > 0 {
		dropConnection(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	entry := logEntry{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Headers: map[string]string{}, Length: len(body)}
	for name := range r.Header {
		l := strings.ToLower(name)
		if (strings.HasPrefix(l, "x-amz-") && l != "x-amz-security-token") || l == "range" || l == "content-type" {
			entry.Headers[l] = r.Header.Get(name)
		}
	}
	rec := &recorder{ResponseWriter: w, status: 200}
	defer func() {
		entry.Status = rec.status
		p.mu.Lock()
		if len(p.log) < 20000 {
			p.log = append(p.log, entry)
		}
		p.mu.Unlock()
	}()
	if f != nil && f.Status > 0 {
		s3error(rec, f.Status, "ServiceUnavailable", "Please reduce your request rate. (injected)")
		return
	}
	if !p.verify(rec, r, body) {
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	p.s3.ServeHTTP(rec, r)
}

// dropConnection reads half of the body (or none, for a request without
// one), answers half a response when there was no body, and closes.
func dropConnection(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > 0 {
		io.CopyN(io.Discard, r.Body, r.ContentLength/2)
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		return
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		return
	}
	if r.ContentLength <= 0 {
		buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nContent-Type: application/octet-stream\r\n\r\npartial")
		buf.Flush()
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0) // a reset, as a crashed proxy gives
	}
	conn.Close()
}

func randomHex(n int) string {
	b := make([]byte, n)
	f, err := os.Open("/dev/urandom")
	if err != nil {
		log.Fatal(err)
	}
	io.ReadFull(f, b)
	f.Close()
	return hex.EncodeToString(b)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address")
	region := flag.String("region", "us-east-1", "the region signatures must name")
	buckets := flag.String("buckets", "kalua", "comma-separated buckets to create")
	flag.Parse()
	accessKey, secretKey := os.Getenv("S3PEER_ACCESS_KEY"), os.Getenv("S3PEER_SECRET_KEY")
	if accessKey == "" || secretKey == "" {
		log.Fatal("set S3PEER_ACCESS_KEY and S3PEER_SECRET_KEY")
	}
	backend := s3mem.New()
	for _, b := range strings.Split(*buckets, ",") {
		if b != "" {
			if err := backend.CreateBucket(b); err != nil {
				log.Fatal(err)
			}
		}
	}
	fake := gofakes3.New(backend, gofakes3.WithoutVersioning(), gofakes3.WithTimeSkewLimit(0),
		gofakes3.WithLogger(gofakes3.DiscardLog()))
	p := &peer{
		region: *region,
		temp: aws.Credentials{AccessKeyID: "ASIA" + strings.ToUpper(randomHex(8)), SecretAccessKey: randomHex(20),
			SessionToken: "tok-" + randomHex(32)},
		ecsToken:  os.Getenv("S3PEER_CONTAINER_TOKEN"),
		s3:        fake.Server(),
		imdsToken: randomHex(16),
	}
	p.keys = map[string]aws.Credentials{
		accessKey:             {AccessKeyID: accessKey, SecretAccessKey: secretKey},
		p.temp.AccessKeyID:    p.temp,
	}
	srv := &http.Server{Addr: *addr, Handler: p, ReadHeaderTimeout: 30 * time.Second}
	log.Printf("s3peer listening on %s (region %s, buckets %s)", *addr, *region, *buckets)
	log.Fatal(srv.ListenAndServe())
}
