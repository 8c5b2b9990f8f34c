package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMain runs the real program instead of the tests when WEBAPP_TEST_ARGS is set, so that
// a test can start `webapp worker` as a process and send it signals.
func TestMain(m *testing.M) {
	if args := os.Getenv("WEBAPP_TEST_ARGS"); args != "" {
		os.Args = append([]string{"webapp"}, strings.Fields(args)...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func newQueue(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, sub := range []string{"pending", "taken", "done"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func enqueue(t *testing.T, dir, id, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "pending", id), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func names(t *testing.T, dir, sub string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, sub))
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, entry := range entries {
		found = append(found, entry.Name())
	}
	return found
}

// folderHolds fails the test unless the queue's folder sub holds exactly the files named
// (comma-separated, in name order).
func folderHolds(t *testing.T, dir, sub, want, why string) {
	t.Helper()
	if got := strings.Join(names(t, dir, sub), ","); got != want {
		t.Errorf("%s/ holds [%s], want [%s]: %s", sub, got, want, why)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func testWorker(dir, version string) *queueWorker {
	return &queueWorker{dir: dir, version: version, hostname: "host-" + version,
		jobTime: 10 * time.Millisecond, poll: 5 * time.Millisecond,
		logger: log.New(io.Discard, "", 0)}
}

func waitFor(t *testing.T, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after %s for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWorkersSharingAQueueRunEveryJobExactlyOnce(t *testing.T) {
	dir := newQueue(t)
	const jobs = 60
	for i := 0; i < jobs; i++ {
		enqueue(t, dir, fmt.Sprintf("job-%03d", i), "seconds=0.002\n")
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	counts := make([]int, 6)
	for n := range counts {
		wg.Add(1)
		go func(n int) {
			defer wg.Done()
			done, err := testWorker(dir, fmt.Sprintf("v%d", n)).run(ctx)
			if err != nil {
				t.Errorf("worker %d: %v", n, err)
			}
			counts[n] = done
		}(n)
	}
	waitFor(t, "the queue to drain", 10*time.Second, func() bool {
		return len(names(t, dir, "done")) == jobs && len(names(t, dir, "taken")) == 0
	})
	cancel()
	wg.Wait()
	total := 0
	for _, c := range counts {
		total += c
	}
	if total != jobs {
		t.Errorf("workers say they did %d jobs, want %d", total, jobs)
	}
	folderHolds(t, dir, "pending", "", "every job is taken")
	for _, id := range names(t, dir, "done") {
		lines := strings.Split(strings.TrimSuffix(read(t, filepath.Join(dir, "done", id)), "\n"), "\n")
		if len(lines) != 1 {
			t.Errorf("job %s ran %d times: %q", id, len(lines), lines)
		}
		fields := strings.Fields(lines[0])
		if len(fields) != 4 || !strings.HasPrefix(fields[0], "version=v") ||
			!strings.HasPrefix(fields[1], "host=host-v") || !strings.HasPrefix(fields[2], "start=") ||
			!strings.HasPrefix(fields[3], "end=") {
			t.Errorf("job %s: done line %q", id, lines[0])
		}
	}
}

func TestAStoppedWorkerFinishesTheJobItHoldsAndTakesNoOther(t *testing.T) {
	dir := newQueue(t)
	enqueue(t, dir, "a", "seconds=0.3\n")
	enqueue(t, dir, "b", "seconds=0.3\n")
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		done int
		err  error
	}
	finished := make(chan result, 1)
	go func() {
		done, err := testWorker(dir, "v1").run(ctx)
		finished <- result{done, err}
	}()
	held := filepath.Join(dir, "taken", "a")
	waitFor(t, "job a to be taken", 5*time.Second, func() bool {
		data, err := os.ReadFile(held)
		return err == nil && strings.Contains(string(data), "taken version=v1")
	})
	text := read(t, held)
	if !strings.HasPrefix(text, "seconds=0.3\ntaken version=v1 host=host-v1 start=") {
		t.Errorf("taken/a = %q: the job's text, then the worker's line", text)
	}
	cancel()
	got := <-finished
	if got.err != nil || got.done != 1 {
		t.Fatalf("run = %d, %v; want 1 job done, no error", got.done, got.err)
	}
	if _, err := os.Stat(filepath.Join(dir, "done", "a")); err != nil {
		t.Errorf("job a not done: %v", err)
	}
	folderHolds(t, dir, "taken", "", "the job held is finished")
	folderHolds(t, dir, "pending", "b", "no job is taken after the stop")
}

func TestClaimSkipsFilesBeingWrittenAndTakesJobsInNameOrder(t *testing.T) {
	dir := newQueue(t)
	enqueue(t, dir, ".c.tmp", "")
	enqueue(t, dir, "b", "")
	enqueue(t, dir, "a", "")
	w := testWorker(dir, "v1")
	var taken []string
	for {
		id, err := w.claim(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if id == "" {
			break
		}
		taken = append(taken, id)
	}
	if strings.Join(taken, ",") != "a,b" {
		t.Errorf("taken %v, want [a b]", taken)
	}
	folderHolds(t, dir, "pending", ".c.tmp", "a file being written is no job")
}

func TestAJobAnotherWorkerRenamedIsSkipped(t *testing.T) {
	dir := newQueue(t)
	enqueue(t, dir, "a", "")
	w := testWorker(dir, "v1")
	// Another worker renames it between this worker's listing and its rename: the listing
	// still has it, the rename finds nothing.
	if err := os.Rename(filepath.Join(dir, "pending", "a"), filepath.Join(dir, "taken", "a")); err != nil {
		t.Fatal(err)
	}
	enqueue(t, dir, "a2", "")
	id, err := w.claim(context.Background())
	if err != nil || id != "a2" {
		t.Errorf("claim = %q, %v; want a2", id, err)
	}
}

func TestJobSeconds(t *testing.T) {
	for _, tc := range []struct {
		text string
		want time.Duration
		bad  bool
	}{
		{"", 3 * time.Second, false},
		{"id=x\nseconds=1.5\n", 1500 * time.Millisecond, false},
		{"seconds=0", 0, false},
		{"seconds=soon", 3 * time.Second, true},
		{"seconds=-1", 3 * time.Second, true},
	} {
		got, err := jobSeconds(tc.text, 3*time.Second)
		if got != tc.want || (err != nil) != tc.bad {
			t.Errorf("jobSeconds(%q) = %s, %v; want %s (error: %v)", tc.text, got, err, tc.want, tc.bad)
		}
	}
}

// startWorker runs `webapp worker` as a process with the environment given.
func startWorker(t *testing.T, env ...string) (*exec.Cmd, *output) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), "WEBAPP_TEST_ARGS=worker"), env...)
	out := &output{}
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return cmd, out
}

// output is what a process printed so far, read while it still writes.
type output struct {
	mu   sync.Mutex
	text strings.Builder
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.text.Write(p)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.text.String()
}

func exitCode(t *testing.T, cmd *exec.Cmd, timeout time.Duration) int {
	t.Helper()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			return exitErr.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(timeout):
		t.Fatalf("the worker is still running after %s", timeout)
		return -1
	}
}

func TestTheWorkerCommandFinishesItsJobOnSIGTERMAndExits0(t *testing.T) {
	dir := newQueue(t)
	enqueue(t, dir, "job-1", "seconds=1\n")
	cmd, out := startWorker(t, "APP_VERSION=v7", "QUEUE_DIR="+dir)
	waitFor(t, "job-1 to be taken", 5*time.Second, func() bool {
		return strings.Contains(out.String(), "took job=job-1")
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	enqueue(t, dir, "job-2", "")
	if code := exitCode(t, cmd, 5*time.Second); code != 0 {
		t.Fatalf("exit code %d:\n%s", code, out)
	}
	if line := read(t, filepath.Join(dir, "done", "job-1")); !strings.HasPrefix(line, "version=v7 host=") ||
		strings.Count(line, "\n") != 1 {
		t.Errorf("done/job-1 = %q", line)
	}
	folderHolds(t, dir, "taken", "", "the job held is finished")
	folderHolds(t, dir, "pending", "job-2", "no job is taken after SIGTERM")
	for _, want := range []string{"worker version=v7 host=", "starting: queue " + dir + ", jobs of 3s",
		"took job=job-1 (1s)", "done job=job-1 in 1", "worker version=v7 exiting on signal: 1 jobs done"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}

	// JOB_SECONDS for a job that does not say; an idle worker exits at once on SIGTERM.
	cmd, out = startWorker(t, "APP_VERSION=v8", "QUEUE_DIR="+dir, "JOB_SECONDS=0.1")
	waitFor(t, "job-2 to be done", 5*time.Second, func() bool {
		return strings.Contains(out.String(), "done job=job-2")
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := exitCode(t, cmd, time.Second); code != 0 {
		t.Fatalf("exit code %d:\n%s", code, out)
	}
	if !strings.Contains(out.String(), "took job=job-2 (100ms)") {
		t.Errorf("log:\n%s", out)
	}
}

func TestACrashVersionTakesNoJobAndExits1AfterTwoSeconds(t *testing.T) {
	dir := newQueue(t)
	enqueue(t, dir, "job-1", "")
	started := time.Now()
	cmd, output := startWorker(t, "APP_VERSION=crash1", "QUEUE_DIR="+dir)
	if code := exitCode(t, cmd, 5*time.Second); code != 1 {
		t.Fatalf("exit code %d, want 1:\n%s", code, output)
	}
	if elapsed := time.Since(started); elapsed < crashAfter {
		t.Errorf("exited after %s, before %s", elapsed, crashAfter)
	}
	folderHolds(t, dir, "pending", "job-1", "a crash worker takes no job")
	if !strings.Contains(output.String(), "worker version=crash1 crashing on purpose (exit 1)") {
		t.Errorf("log:\n%s", output)
	}
}

func TestTheWorkerCommandNeedsAQueue(t *testing.T) {
	cmd, output := startWorker(t, "QUEUE_DIR=")
	if code := exitCode(t, cmd, 5*time.Second); code != 2 {
		t.Fatalf("exit code %d, want 2:\n%s", code, output)
	}
	if !strings.Contains(output.String(), "QUEUE_DIR is not set") {
		t.Errorf("output: %s", output)
	}
	cmd, output = startWorker(t, "QUEUE_DIR="+t.TempDir(), "JOB_SECONDS=soon")
	if code := exitCode(t, cmd, 5*time.Second); code != 2 {
		t.Fatalf("exit code %d, want 2:\n%s", code, output)
	}
}
