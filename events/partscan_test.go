package events

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// chunkReader returns at most n bytes per Read and io.EOF on a read of its
// own, as the tee's pipe does.
type chunkReader struct {
	data []byte
	n    int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), c.n, len(c.data))
	copy(p, c.data[:k])
	c.data = c.data[k:]
	return k, nil
}

// checkSameParse fails t unless parseMultipart, reading body in chunks of
// chunk bytes, keeps exactly what mime/multipart (parseMultipartStd)
// keeps, with the same completeness.
func checkSameParse(t *testing.T, body []byte, boundary string, chunk int, lim Limits) {
	t.Helper()
	lim = lim.withDefaults()
	want := parseMultipartStd(bytes.NewReader(body), boundary, lim)
	got := parseMultipart(&chunkReader{data: body, n: chunk}, boundary, lim)
	if got.ok != want.ok || !reflect.DeepEqual(got.fields, want.fields) {
		t.Fatalf("boundary %q, chunk %d, limits %+v, body %q:\nparseMultipart    ok=%v %q\nmime/multipart    ok=%v %q",
			boundary, chunk, lim, body, got.ok, got.fields, want.ok, want.fields)
	}
}

// multipartSeeds are bodies that exercise mime/multipart's corners:
// preamble and epilogue, LF-only lines, quoted-printable, delimiters in
// data and headers, missing or broken boundaries, header continuations and
// errors, lines around the 4 KiB buffer size.
func multipartSeeds(t testing.TB) [][]byte {
	b := testBoundary
	d := "--" + b
	seeds := [][]byte{
		buildMultipart(t, b, map[string]string{"key": "k", "entry": "e1", "email": "a@b"},
			[]testFile{{"file", "a.bin", "application/octet-stream", []byte("\r\n" + d + "x\r\n\r" + d + "\r")}}),
		buildMultipart(t, b, map[string]string{"key": strings.Repeat("k", 5000)}, nil),
		[]byte("preamble\r\nmore\r\n" + d + "\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n" + d + "--\r\nepilogue"),
		[]byte(d + "\nContent-Disposition: form-data; name=\"a\"\n\nline1\nline2\n" + d + "\nContent-Disposition: form-data; name=\"b\"\n\n2\n" + d + "--\n"),
		[]byte(d + "\r\nContent-Disposition: form-data; name=\"q\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na=3Db=\r\nc\r\n" + d + "--"),
		[]byte(d + "\r\nContent-Disposition: form-data; name=\"q\"; filename=\"f\"\r\nContent-Transfer-Encoding: Quoted-Printable\r\n\r\nbad=ZZ\r\n" + d + "--"),
		[]byte(d + "\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n" + d + "--"),
		[]byte(d + "\r\nContent-Disposition: form-data;\r\n name=\"folded\"\r\nX-A: 1\r\n\r\nv\r\n" + d + "--"),
		[]byte(d + "\r\nX: a\r\n" + d + "--: b\r\nContent-Disposition: form-data; name=\"h\"\r\n\r\nv\r\n" + d + "--"),
		[]byte(d + "\r\n no-colon\r\n\r\nv\r\n" + d + "--"),
		[]byte(d + "\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n" + d + " \t\r\n\r\n" + d + "--  "),
		[]byte(d + "\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n" + d + "-x\r\n" + d + "--"),
		[]byte(d + "\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n" + d),
		[]byte(d + "\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv"),
		[]byte(d + "\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nv\r\n" + d + "--"),
		[]byte(d + "\r\nContent-Disposition: form-data; name=\"a\"; name=\"b\"\r\n\r\nv\r\n" + d + "--"),
		[]byte(d + "\r\n\r\nno headers\r\n" + d + "--"),
		[]byte(strings.Repeat("p", 4095) + "\n" + d + "\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n" + d + "--"),
		[]byte(strings.Repeat("p", 4096) + "\n" + d + "--"),
		[]byte(d + "--" + strings.Repeat(" ", 4096-len(d)-2)),
		[]byte(d + "--" + strings.Repeat(" ", 4095-len(d)-2)),
		[]byte(d + "\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n" + d + "--" + strings.Repeat("\t", 5000) + "\r\n"),
		[]byte(d + "\r\nContent-Disposition: form-data; name=\"big\"\r\n\r\n" + strings.Repeat("x", 70000) + "\r\n" + d + "--"),
		[]byte(d + "\r\nContent-Disposition: form-data; name=\"a\"\r\n" + strings.Repeat("X-H: v\r\n", 10001) + "\r\nv\r\n" + d + "--"),
		[]byte("\r\n" + d + "\r\n\r\n"),
		[]byte(d + "\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n\r\n" + d + "--"),
		[]byte(d + "\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\nx\r\n" + d + "--"),
		{},
	}
	return seeds
}

// TestMultipartScannerSeeds checks the fast parser against mime/multipart
// on the corner cases, for several read sizes and limits.
func TestMultipartScannerSeeds(t *testing.T) {
	for _, body := range multipartSeeds(t) {
		for _, chunk := range []int{1, 2, 3, 7, 64, 4095, 4096, 4097, 1 << 20} {
			checkSameParse(t, body, testBoundary, chunk, Limits{})
			checkSameParse(t, body, testBoundary, chunk, Limits{MaxFieldBytes: 3, MaxFields: 2, MaxFormBytes: 8})
		}
	}
}

// TestMultipartScannerMutations checks the fast parser against
// mime/multipart on many random mutations of well-formed bodies: bytes
// flipped, cut, duplicated, and boundary fragments, CR, LF, dashes and
// spaces inserted.
func TestMultipartScannerMutations(t *testing.T) {
	iterations := 20000
	if testing.Short() {
		iterations = 2000
	}
	rng := rand.New(rand.NewPCG(4, 2))
	seeds := multipartSeeds(t)
	boundaries := []string{testBoundary, "b", "-", "a b", "x--"}
	for range iterations {
		boundary := boundaries[rng.IntN(len(boundaries))]
		d := "--" + boundary
		var body []byte
		if boundary == testBoundary && rng.IntN(2) == 0 {
			body = bytes.Clone(seeds[rng.IntN(len(seeds))])
		} else {
			var sb strings.Builder
			for j := range rng.IntN(4) {
				nl := "\r\n"
				if rng.IntN(4) == 0 {
					nl = "\n"
				}
				disp := fmt.Sprintf("form-data; name=\"f%d\"", j)
				if rng.IntN(3) == 0 {
					disp += "; filename=\"x.bin\""
				}
				sb.WriteString(d + nl + "Content-Disposition: " + disp + nl)
				if rng.IntN(5) == 0 {
					sb.WriteString("Content-Transfer-Encoding: quoted-printable" + nl)
				}
				sb.WriteString(nl)
				for range rng.IntN(6) {
					sb.WriteString([]string{"v", "=3D", "=\r\n", "\r", "\n", "\r\n", d, "-", " ", "\t", "x"}[rng.IntN(11)])
				}
				sb.WriteString(nl)
			}
			sb.WriteString(d + "--")
			body = []byte(sb.String())
		}
		frags := []string{"\r", "\n", "\r\n", "-", "--", " ", "\t", d, "\r\n" + d, d + "--", ":", "=", "\x00"}
		for range rng.IntN(4) {
			if len(body) == 0 {
				body = []byte(frags[rng.IntN(len(frags))])
				continue
			}
			at := rng.IntN(len(body) + 1)
			switch rng.IntN(4) {
			case 0: // insert a fragment
				body = append(body[:at:at], append([]byte(frags[rng.IntN(len(frags))]), body[at:]...)...)
			case 1: // cut
				end := min(len(body), at+rng.IntN(8))
				body = append(body[:at:at], body[end:]...)
			case 2: // flip a byte
				if at < len(body) {
					body[at] = byte(rng.Uint32())
				}
			case 3: // truncate
				body = body[:at]
			}
		}
		lim := Limits{}
		if rng.IntN(3) == 0 {
			lim = Limits{MaxFieldBytes: int64(1 + rng.IntN(8)), MaxFields: 1 + rng.IntN(3), MaxFormBytes: int64(1 + rng.IntN(16))}
		}
		chunk := []int{1, 2, 5, 16, 4096, 1 << 20}[rng.IntN(6)]
		checkSameParse(t, body, boundary, chunk, lim)
	}
}

// FuzzMultipartScanner checks the fast parser against mime/multipart on
// arbitrary bodies, boundaries, read sizes and limits.
func FuzzMultipartScanner(f *testing.F) {
	for i, body := range multipartSeeds(f) {
		f.Add(body, testBoundary, uint8(i), uint16(0), uint8(0))
	}
	f.Add([]byte("--b\r\n\r\nx\r\n--b--"), "b", uint8(1), uint16(2), uint8(1))
	f.Add([]byte("--\r\n--\r\n\r\n\r\n----"), "", uint8(0), uint16(0), uint8(0))
	f.Add([]byte("--a\rb\r\n\r\n\r\n--a\rb--"), "a\rb", uint8(0), uint16(0), uint8(0))
	f.Fuzz(func(t *testing.T, body []byte, boundary string, chunk uint8, maxField uint16, maxFields uint8) {
		if boundary == "" {
			return // classifyBody never lets an empty boundary through
		}
		checkSameParse(t, body, boundary, int(chunk)+1, Limits{MaxFieldBytes: int64(maxField), MaxFields: int(maxFields)})
	})
}

// TestScanUntilBoundaryTail checks the shortened search for a delimiter
// cut by the end of the buffer against the whole-buffer search it
// replaces.
func TestScanUntilBoundaryTail(t *testing.T) {
	whole := func(buf, nlDashBoundary []byte) int {
		i := bytes.LastIndexByte(buf, nlDashBoundary[0])
		if i >= 0 && bytes.HasPrefix(nlDashBoundary, buf[i:]) {
			return i
		}
		return len(buf)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for _, nlDash := range []string{"\r\n--b", "\n--b", "\r\n--" + testBoundary, "\n---"} {
		alphabet := []byte("\r\n-b" + testBoundary[:3])
		for range 20000 {
			buf := make([]byte, rng.IntN(3*len(nlDash)))
			for i := range buf {
				buf[i] = alphabet[rng.IntN(len(alphabet))]
			}
			if bytes.Contains(buf, []byte(nlDash)) || bytes.HasPrefix([]byte(nlDash), buf) || len(buf) == 0 {
				continue // handled before the tail search
			}
			want := whole(buf, []byte(nlDash))
			// total 1: past the start of the body, where only
			// nlDashBoundary counts.
			got, _ := scanUntilBoundary(buf, nil, []byte(nlDash), 1, nil)
			if got != want {
				t.Fatalf("scanUntilBoundary(%q, %q) = %d, whole-buffer search %d", buf, nlDash, got, want)
			}
		}
	}
}
