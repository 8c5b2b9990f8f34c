package main

// `webapp worker`: a queue worker from the same binary (and so the same image) as the web
// server, so that a deploy can be shown to lose no job and run none twice.
//
// The queue is a folder (QUEUE_DIR), on a volume every worker mounts:
//
//	pending/<id>  a job; its text may say `seconds=N` (else JOB_SECONDS, default 3)
//	taken/<id>    a job a worker holds: the job's text, then one line
//	              `taken version=V host=H start=T`
//	done/<id>     one line per run: `version=V host=H start=T end=T`
//
// A worker claims a job by renaming pending/<id> to taken/<id>: rename is atomic on one
// file system, so two workers never hold the same job. It appends to done/<id> (a job run
// twice would show two lines) before it removes taken/<id>. Names starting with "." are
// files being written, never jobs. Times are UTC, RFC 3339 with microseconds.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	defaultJobSeconds = 3.0
	workerPoll        = 200 * time.Millisecond
	queueTimeFormat   = "2006-01-02T15:04:05.000000Z07:00"
)

// queueWorker takes jobs from one queue folder, one at a time.
type queueWorker struct {
	dir      string
	version  string
	hostname string
	jobTime  time.Duration // when the job does not say its own
	poll     time.Duration // between looks at an empty pending/
	logger   *log.Logger
}

// runWorker is `webapp worker`: its exit code. SIGTERM or SIGINT: no new job, the one held
// is finished, exit 0. A "crash*" version (or WORKER_CRASH=1) takes no job and exits 1
// after crashAfter.
func runWorker(version string) int {
	logger := log.New(os.Stdout, "", log.LstdFlags)
	dir := os.Getenv("QUEUE_DIR")
	if dir == "" {
		fmt.Fprintln(os.Stderr, "worker: QUEUE_DIR is not set (the queue's folder)")
		return 2
	}
	jobTime := time.Duration(defaultJobSeconds * float64(time.Second))
	if text := os.Getenv("JOB_SECONDS"); text != "" {
		d, err := parseSeconds(text)
		if err != nil {
			fmt.Fprintf(os.Stderr, "worker: JOB_SECONDS: %v\n", err)
			return 2
		}
		jobTime = d
	}
	hostname, err := os.Hostname()
	if err != nil {
		hostname = "unknown"
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	// WORKER_CRASH=1 (a role's env): this worker crashes as a "crash*" version does, while
	// the web slots of the same version serve: a version whose workers alone are broken.
	if strings.HasPrefix(version, "crash") || os.Getenv("WORKER_CRASH") == "1" {
		logger.Printf("worker version=%s host=%s starting: crashes in %s, takes no job",
			version, hostname, crashAfter)
		select {
		case <-time.After(crashAfter):
			logger.Printf("worker version=%s crashing on purpose (exit 1)", version)
			return 1
		case <-ctx.Done():
			logger.Printf("worker version=%s exiting on signal: 0 jobs done", version)
			return 0
		}
	}

	w := queueWorker{dir: dir, version: version, hostname: hostname, jobTime: jobTime,
		poll: workerPoll, logger: logger}
	if err := w.prepare(); err != nil {
		logger.Printf("worker version=%s: %v", version, err)
		return 1
	}
	logger.Printf("worker version=%s host=%s starting: queue %s, jobs of %s",
		version, hostname, dir, jobTime)
	done, err := w.run(ctx)
	if err != nil {
		logger.Printf("worker version=%s exiting on error after %d jobs done: %v",
			version, done, err)
		return 1
	}
	logger.Printf("worker version=%s exiting on signal: %d jobs done", version, done)
	return 0
}

func (w *queueWorker) path(parts ...string) string {
	return filepath.Join(append([]string{w.dir}, parts...)...)
}

// prepare makes the queue's folders if missing (the volume may be new and empty).
func (w *queueWorker) prepare() error {
	for _, sub := range []string{"pending", "taken", "done"} {
		if err := os.MkdirAll(w.path(sub), 0o777); err != nil {
			return err
		}
	}
	return nil
}

// run takes and works jobs until ctx is done; a job taken is always finished. It answers
// how many jobs it did, and an error that stopped it (the job it held stays in taken/).
func (w *queueWorker) run(ctx context.Context) (int, error) {
	done := 0
	for ctx.Err() == nil {
		id, err := w.claim(ctx)
		if err != nil {
			return done, err
		}
		if id == "" {
			select {
			case <-ctx.Done():
			case <-time.After(w.poll):
			}
			continue
		}
		if err := w.work(id); err != nil {
			return done, fmt.Errorf("job %s: %w", id, err)
		}
		done++
	}
	return done, nil
}

// claim moves the first pending job it can into taken/ and answers its id; "" when there is
// none (or ctx is done). A job another worker renamed first is skipped.
func (w *queueWorker) claim(ctx context.Context) (string, error) {
	entries, err := os.ReadDir(w.path("pending"))
	if err != nil {
		return "", err
	}
	for _, entry := range entries {
		id := entry.Name()
		if strings.HasPrefix(id, ".") || !entry.Type().IsRegular() {
			continue
		}
		if ctx.Err() != nil {
			return "", nil
		}
		err := os.Rename(w.path("pending", id), w.path("taken", id))
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
	}
	return "", nil
}

// work does the job held in taken/<id> and records it in done/<id>.
func (w *queueWorker) work(id string) error {
	held := w.path("taken", id)
	text, err := os.ReadFile(held)
	if err != nil {
		return err
	}
	length, err := jobSeconds(string(text), w.jobTime)
	if err != nil {
		w.logger.Printf("worker version=%s job=%s: %v; takes %s", w.version, id, err, w.jobTime)
	}
	start := time.Now()
	// The worker's line is added by writing the whole file anew and renaming it over the
	// job: rename needs only the folder's permission, whoever owns the job's file.
	line := fmt.Sprintf("taken version=%s host=%s start=%s\n", w.version, w.hostname,
		queueTime(start))
	if err := writeThenRename(w.path("taken", "."+id+".tmp"), held,
		withNewline(string(text))+line); err != nil {
		return err
	}
	w.logger.Printf("worker version=%s host=%s took job=%s (%s)", w.version, w.hostname, id,
		length)
	time.Sleep(length)
	end := time.Now()
	if err := appendLine(w.path("done", id), fmt.Sprintf("version=%s host=%s start=%s end=%s\n",
		w.version, w.hostname, queueTime(start), queueTime(end))); err != nil {
		return err
	}
	if err := os.Remove(held); err != nil {
		return err
	}
	w.logger.Printf("worker version=%s host=%s done job=%s in %s", w.version, w.hostname, id,
		end.Sub(start).Round(time.Millisecond))
	return nil
}

// jobSeconds is how long a job takes: its `seconds=N` line, else byDefault (also when the
// line is not a number, with the error).
func jobSeconds(text string, byDefault time.Duration) (time.Duration, error) {
	for _, line := range strings.Split(text, "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "seconds=") {
			d, err := parseSeconds(strings.TrimPrefix(line, "seconds="))
			if err != nil {
				return byDefault, err
			}
			return d, nil
		}
	}
	return byDefault, nil
}

// parseSeconds reads a number of seconds, 0 or more, fractions allowed ("3", "0.5").
func parseSeconds(text string) (time.Duration, error) {
	seconds, err := strconv.ParseFloat(strings.TrimSpace(text), 64)
	if err != nil || seconds < 0 || seconds > 86400 {
		return 0, fmt.Errorf("not a number of seconds from 0 to 86400: %q", text)
	}
	return time.Duration(seconds * float64(time.Second)), nil
}

func queueTime(t time.Time) string {
	return t.UTC().Format(queueTimeFormat)
}

func withNewline(text string) string {
	if text == "" || strings.HasSuffix(text, "\n") {
		return text
	}
	return text + "\n"
}

func writeThenRename(temporary, target, text string) error {
	if err := os.WriteFile(temporary, []byte(text), 0o666); err != nil {
		return err
	}
	return os.Rename(temporary, target)
}

// appendLine writes line with one write(2) in append mode: two writers' lines never mix.
func appendLine(file, line string) error {
	f, err := os.OpenFile(file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o666)
	if err != nil {
		return err
	}
	_, err = f.WriteString(line)
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	return err
}
