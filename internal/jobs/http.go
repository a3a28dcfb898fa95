package jobs

import (
	"archive/zip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/goray/goray/internal/jobs/runtimeenv"
)

// APIVersion is the Jobs API version goray speaks (Ray's 4: DELETE).
const APIVersion = "4"

// RayVersion is the Ray release whose Jobs API this server follows; Ray's
// job clients refuse clusters that report a Ray version below 1.9, so
// /api/version reports it as ray_version and goray's own as goray_version.
const RayVersion = "2.53.0"

// maxSubmitBody bounds a submission request.
const maxSubmitBody = 16 << 20

// Register mounts the Jobs REST API on mux (which the caller wraps with
// authentication).
func (m *Manager) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/version", m.handleVersion)
	mux.HandleFunc("GET /api/packages/{protocol}/{name}", m.handleGetPackage)
	mux.HandleFunc("PUT /api/packages/{protocol}/{name}", m.handlePutPackage)
	mux.HandleFunc("POST /api/jobs/{$}", m.handleSubmit)
	mux.HandleFunc("POST /api/jobs", m.handleSubmit)
	mux.HandleFunc("GET /api/jobs/{$}", m.handleList)
	mux.HandleFunc("GET /api/jobs", m.handleList)
	mux.HandleFunc("GET /api/jobs/{id}", m.handleGet)
	mux.HandleFunc("DELETE /api/jobs/{id}", m.handleDelete)
	mux.HandleFunc("GET /api/jobs/{id}/logs", m.handleLogs)
	mux.HandleFunc("GET /api/jobs/{id}/logs/tail", m.handleTail)
	mux.HandleFunc("POST /api/jobs/{id}/stop", m.handleStop)
}

func textError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprint(w, msg)
}

// fail answers an error: 400 for bad input, 404 for unknown jobs, 413 for
// oversized packages, else 500.
func fail(w http.ResponseWriter, err error) {
	var bad *BadRequestError
	switch {
	case errors.As(err, &bad):
		textError(w, http.StatusBadRequest, bad.Msg)
	case errors.Is(err, runtimeenv.ErrTooLarge):
		textError(w, http.StatusRequestEntityTooLarge, err.Error())
	default:
		textError(w, http.StatusInternalServerError, err.Error())
	}
}

func (m *Manager) handleVersion(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, map[string]string{"version": APIVersion, "ray_version": RayVersion, "goray_version": m.cfg.Version, "ray_commit": "goray", "session_name": m.cfg.SessionName})
}

func packageURI(w http.ResponseWriter, r *http.Request) (string, bool) {
	proto, name := r.PathValue("protocol"), r.PathValue("name")
	if proto != "gcs" {
		textError(w, http.StatusBadRequest, fmt.Sprintf("Unsupported package protocol %q: goray stores gcs packages only", proto))
		return "", false
	}
	if !runtimeenv.ValidName(name) {
		textError(w, http.StatusBadRequest, fmt.Sprintf("Invalid package name %q: it must be a .zip file name without '/'", name))
		return "", false
	}
	return "gcs://" + name, true
}

func (m *Manager) handleGetPackage(w http.ResponseWriter, r *http.Request) {
	uri, ok := packageURI(w, r)
	if !ok {
		return
	}
	found, err := runtimeenv.Exists(r.Context(), m.cfg.GCS, uri)
	if err != nil {
		fail(w, err)
		return
	}
	if !found {
		textError(w, http.StatusNotFound, "Package "+uri+" does not exist")
		return
	}
	w.WriteHeader(http.StatusOK)
}

// slack is how much of an oversized upload is still read, so the error can
// list its largest files.
const slack = 64 << 20

func (m *Manager) handlePutPackage(w http.ResponseWriter, r *http.Request) {
	uri, ok := packageURI(w, r)
	if !ok {
		return
	}
	limit := m.cfg.MaxPackageSize
	if r.ContentLength > limit+slack {
		fail(w, &runtimeenv.TooLargeError{Limit: limit, Size: r.ContentLength})
		return
	}
	tmp, err := os.CreateTemp(m.cfg.TempDir, "upload-*.zip")
	if err != nil {
		fail(w, err)
		return
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, io.LimitReader(r.Body, limit+slack+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		textError(w, http.StatusBadRequest, "Reading the package upload failed: "+err.Error())
		return
	}
	if n > limit {
		e := &runtimeenv.TooLargeError{Limit: limit, Size: n, AtLeast: n > limit+slack}
		if !e.AtLeast {
			e.Largest = runtimeenv.ZipLargest(tmp.Name(), 5)
		}
		fail(w, e)
		return
	}
	if !isZip(tmp.Name()) {
		textError(w, http.StatusBadRequest, "The package upload is not a zip archive")
		return
	}
	if err := runtimeenv.Store(r.Context(), m.cfg.GCS, uri, tmp.Name()); err != nil {
		fail(w, err)
		return
	}
	m.log.Info("package stored", "uri", uri, "bytes", n)
	w.WriteHeader(http.StatusOK)
}

func (m *Manager) handleSubmit(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSubmitBody))
	if err != nil {
		textError(w, http.StatusBadRequest, "Reading the job submission request failed: "+err.Error())
		return
	}
	req, err := ParseSubmitRequest(body)
	if err != nil {
		fail(w, err)
		return
	}
	sid, err := m.Submit(r.Context(), req)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, map[string]string{"job_id": sid, "submission_id": sid})
}

func (m *Manager) handleList(w http.ResponseWriter, r *http.Request) {
	l, err := m.List(r.Context())
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, l)
}

// find resolves {id}; it answers 404 itself.
func (m *Manager) find(w http.ResponseWriter, r *http.Request) (*resolved, bool) {
	id := r.PathValue("id")
	res, err := m.resolve(r.Context(), id)
	if errors.Is(err, ErrNotFound) {
		textError(w, http.StatusNotFound, fmt.Sprintf("Job %s does not exist", id))
		return nil, false
	}
	if err != nil {
		fail(w, err)
		return nil, false
	}
	return res, true
}

func (m *Manager) handleGet(w http.ResponseWriter, r *http.Request) {
	if res, ok := m.find(w, r); ok {
		writeJSON(w, res.details())
	}
}

func (m *Manager) handleStop(w http.ResponseWriter, r *http.Request) {
	rec, ok := m.findSubmission(w, r, "stop")
	if !ok {
		return
	}
	if rec.Status.Terminal() {
		writeJSON(w, map[string]bool{"stopped": false})
		return
	}
	stopped, err := m.Stop(r.Context(), rec)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, map[string]bool{"stopped": stopped})
}

// findSubmission is find for the endpoints that only submission jobs
// have (Ray answers 400 "Can only <what> submission type jobs").
func (m *Manager) findSubmission(w http.ResponseWriter, r *http.Request, what string) (*Record, bool) {
	res, ok := m.find(w, r)
	if !ok {
		return nil, false
	}
	if res.rec == nil {
		textError(w, http.StatusBadRequest, "Can only "+what+" submission type jobs")
		return nil, false
	}
	return res.rec, true
}

func (m *Manager) handleDelete(w http.ResponseWriter, r *http.Request) {
	rec, ok := m.findSubmission(w, r, "delete")
	if !ok {
		return
	}
	if !rec.Status.Terminal() {
		textError(w, http.StatusBadRequest, fmt.Sprintf("Attempted to delete job with submission_id %s, but it is in the non-terminal state %s. Stop it first.", rec.SubmissionID, rec.Status))
		return
	}
	if err := m.st.del(r.Context(), rec.SubmissionID); err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, map[string]bool{"deleted": true})
}

func (m *Manager) handleLogs(w http.ResponseWriter, r *http.Request) {
	rec, ok := m.findSubmission(w, r, "get logs of")
	if !ok {
		return
	}
	b, _, err := m.logChunk(r.Context(), rec, 0, true)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, map[string]string{"logs": string(b)})
}

// handleTail streams a job's driver log over a WebSocket as TEXT frames:
// every byte from the start, until the driver has exited and its log is
// read to the end; then it closes normally.
func (m *Manager) handleTail(w http.ResponseWriter, r *http.Request) {
	rec, ok := m.findSubmission(w, r, "get logs of")
	if !ok {
		return
	}
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return // Accept answered the client
	}
	defer conn.CloseNow()
	ctx := conn.CloseRead(m.ctx)
	sid := rec.SubmissionID
	var off int64
	var pending []byte // an incomplete UTF-8 sequence at the end of a chunk
	t := time.NewTicker(m.cfg.PollInterval)
	defer t.Stop()
	for {
		rec, err := m.st.get(ctx, sid)
		if err != nil {
			conn.Close(websocket.StatusInternalError, truncate(err.Error()))
			return
		}
		chunk, done, err := m.logChunk(ctx, rec, off, false)
		// While PENDING the node may not have taken the job over yet, so
		// "no log there" does not mean the end yet.
		done = done && rec.Status != Pending
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// The node is unreachable: once the job is terminal there is
			// nothing more to wait for.
			if rec.Status.Terminal() {
				conn.Close(websocket.StatusNormalClosure, "")
				return
			}
		}
		if len(chunk) > 0 {
			off += int64(len(chunk))
			data := append(pending, chunk...)
			cut := len(data)
			if st := lastRuneStart(data); !done && !utf8.FullRune(data[st:]) {
				cut = st
			}
			pending = append([]byte(nil), data[cut:]...)
			if cut > 0 {
				wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				err := conn.Write(wctx, websocket.MessageText, data[:cut])
				cancel()
				if err != nil {
					return
				}
			}
			if !done {
				continue // more may be waiting
			}
		}
		if done && len(chunk) == 0 {
			if len(pending) > 0 {
				conn.Write(ctx, websocket.MessageText, pending)
			}
			conn.Close(websocket.StatusNormalClosure, "")
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// lastRuneStart is the index where the last (possibly partial) UTF-8
// sequence of b starts.
func lastRuneStart(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-4; i-- {
		if utf8.RuneStart(b[i]) {
			return i
		}
	}
	return len(b)
}

func isZip(path string) bool {
	zr, err := zip.OpenReader(path)
	if err != nil {
		return false
	}
	zr.Close()
	return true
}

func truncate(s string) string {
	if len(s) > 100 {
		return s[:100]
	}
	return s
}
