package echo3dtest

import (
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
)

// TestServerStreamsFileParts uploads a large file part through a pipe and
// checks that the fake counts it without holding it in memory.
func TestServerStreamsFileParts(t *testing.T) {
	const size = 64 << 20
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		err := func() error {
			if err := mw.WriteField("key", testKey); err != nil {
				return err
			}
			part, err := mw.CreateFormFile("file", "big.glb")
			if err != nil {
				return err
			}
			chunk := make([]byte, 32<<10)
			for written := 0; written < size; written += len(chunk) {
				if _, err := part.Write(chunk); err != nil {
					return err
				}
			}
			if err := mw.WriteField("target_type", "2"); err != nil {
				return err
			}
			return mw.Close()
		}()
		pw.CloseWithError(err)
	}()

	req := httptest.NewRequest(http.MethodPost, "/upload", pr)
	req.Header.Set("Content-Type", mw.FormDataContentType())

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c, err := readCall(req)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatalf("readCall: %v", err)
	}
	if len(c.files) != 1 || c.files[0].size != size || c.files[0].filename != "big.glb" {
		t.Fatalf("files = %+v, want one of %d bytes", c.files, size)
	}
	if c.key != testKey || c.params.Get("target_type") != "2" {
		t.Errorf("fields around the file lost: %v", c.params)
	}
	// The writer goroutine allocates too, but neither side may hold the
	// file: allocations must stay far below its size.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > size/8 {
		t.Errorf("allocated %d bytes while streaming %d", alloc, size)
	}
}
