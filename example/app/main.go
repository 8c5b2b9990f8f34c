// Command webapp is a tiny HTTP service used to demonstrate blue/green
// deploys with slotswap. It reports its version on "/" and exposes a
// health check on "/health". Versions starting with "bad" deliberately
// fail the health check so that a rejected deploy can be shown; versions
// starting with "flaky" pass it for their first few seconds and fail it from
// then on, so that a version that breaks after taking traffic can be shown;
// versions starting with "crash" serve normally for their first 2 seconds,
// then stop and exit 1, every time Docker starts them again, so that a
// version that crashes after taking traffic can be shown; versions starting with
// "broken" pass the health check but answer 500 on "/", so that a version
// whose checks pass while its pages fail can be shown; versions starting with "hangup" pass
// the health check but close every other request on "/" without an answer, so that a version
// whose failed requests a proxy retries elsewhere can be shown. Any version fails its
// health check while the file /data/unhealthy exists in its container (`docker
// exec CONTAINER /webapp mark /data/unhealthy`), so that one server's new
// version can be made to fail on cue.
//
// For the kit's settings around the app: ALLOWED_HOSTS (comma-separated names) answers 400
// to any request whose Host header is another (as Django's ALLOWED_HOSTS does);
// HEALTH_PORT serves /health on that port too; MARK_ON_START (comma-separated
// files, e.g. in a volume) has the server append its version to each file when it starts,
// and GET /marks answers their content.
//
// `webapp worker` (worker.go) is the app's queue worker, from the same binary and image:
// it takes jobs from the folder QUEUE_DIR (a volume the workers share), works each
// JOB_SECONDS (default 3), and on SIGTERM finishes the job it holds and exits 0, so that a
// deploy can be shown to lose no job and run none twice. A "crash*" worker takes no job and
// exits 1 two seconds after it starts; the other versions' conventions are the web server's
// alone (a "bad*" or "flaky*" worker works like any other).
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

const (
	defaultPort     = 3000
	maxRequestSleep = 10 * time.Second
	flakyHealthyFor = 3 * time.Second
	crashAfter      = 2 * time.Second
	unhealthyMarker = "/data/unhealthy"
	shutdownTimeout = 25 * time.Second
)

func main() {
	logger := log.New(os.Stdout, "", log.LstdFlags)

	version := os.Getenv("APP_VERSION")
	if version == "" {
		version = "dev"
	}
	if len(os.Args) > 1 {
		os.Exit(runCommand(version, os.Args[1:]))
	}

	port := defaultPort
	if v := os.Getenv("PORT"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 {
			logger.Fatalf("invalid PORT %q", v)
		}
		port = p
	}

	// HOST is optional; empty means all interfaces (what a container needs).
	host := os.Getenv("HOST")

	var startupDelay time.Duration
	if v := os.Getenv("STARTUP_DELAY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			logger.Fatalf("invalid STARTUP_DELAY %q", v)
		}
		startupDelay = d
	}

	healthPort := 0
	if v := os.Getenv("HEALTH_PORT"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 || p == port {
			logger.Fatalf("invalid HEALTH_PORT %q", v)
		}
		healthPort = p
	}
	settings := appSettings{
		allowedHosts: splitList(os.Getenv("ALLOWED_HOSTS")),
		marks:        splitList(os.Getenv("MARK_ON_START")),
	}
	for _, file := range settings.marks {
		if err := appendVersion(file, version); err != nil {
			logger.Fatalf("MARK_ON_START: %v", err)
		}
	}

	hostname, err := os.Hostname()
	if err != nil {
		hostname = "unknown"
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	if startupDelay > 0 {
		logger.Printf("delaying startup by %s", startupDelay)
		select {
		case <-time.After(startupDelay):
		case <-ctx.Done():
			logger.Printf("signal received during startup delay, exiting")
			return
		}
	}

	srv := &http.Server{
		Addr:              net.JoinHostPort(host, strconv.Itoa(port)),
		Handler:           newMux(version, hostname, settings),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      maxRequestSleep + 10*time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    1 << 16,
	}

	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		logger.Fatalf("listen: %v", err)
	}
	logger.Printf("webapp starting version=%s port=%d", version, port)

	errCh := make(chan error, 2)
	go func() {
		errCh <- srv.Serve(ln)
	}()
	if healthPort != 0 {
		healthSrv := &http.Server{
			Addr:              net.JoinHostPort(host, strconv.Itoa(healthPort)),
			Handler:           healthMux(version, settings),
			ReadHeaderTimeout: 5 * time.Second,
		}
		healthLn, err := net.Listen("tcp", healthSrv.Addr)
		if err != nil {
			logger.Fatalf("listen (HEALTH_PORT): %v", err)
		}
		logger.Printf("health checks on port %d", healthPort)
		go func() {
			errCh <- healthSrv.Serve(healthLn)
		}()
	}

	var crash <-chan time.Time // nil: never
	if strings.HasPrefix(version, "crash") {
		crash = time.After(crashAfter)
	}

	select {
	case err := <-errCh:
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Fatalf("serve: %v", err)
		}
		return
	case <-crash:
		logger.Printf("webapp version=%s crashing on purpose (exit 1)", version)
		// Requests already being served get their answer; new connections are refused.
		crashCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = srv.Shutdown(crashCtx)
		cancel()
		os.Exit(1)
	case <-ctx.Done():
	}

	logger.Printf("webapp shutting down version=%s, draining in-flight requests", version)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		logger.Printf("shutdown incomplete: %v", err)
		cancel()
		os.Exit(1)
	}
	logger.Printf("webapp stopped")
}

// appSettings are the optional behaviours the environment turns on.
type appSettings struct {
	allowedHosts []string // empty: any Host
	marks        []string // files the server appended its version to when it started
}

func splitList(text string) []string {
	var items []string
	for _, item := range strings.Split(text, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}

func appendVersion(file, version string) error {
	f, err := os.OpenFile(file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(f, version)
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	return err
}

// hostAllowed answers 400 to a request whose Host (without its port) is not allowed.
func (s appSettings) hostAllowed(w http.ResponseWriter, r *http.Request) bool {
	if len(s.allowedHosts) == 0 {
		return true
	}
	name := r.Host
	if h, _, err := net.SplitHostPort(r.Host); err == nil {
		name = h
	}
	for _, allowed := range s.allowedHosts {
		if strings.EqualFold(name, allowed) {
			return true
		}
	}
	writeText(w, http.StatusBadRequest, fmt.Sprintf("host %q is not allowed\n", r.Host))
	return false
}

func healthHandler(version string, settings appSettings) http.HandlerFunc {
	started := time.Now()
	healthy := func() bool {
		if _, err := os.Stat(unhealthyMarker); err == nil {
			return false
		}
		if strings.HasPrefix(version, "flaky") {
			return time.Since(started) < flakyHealthyFor
		}
		return !strings.HasPrefix(version, "bad")
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if !allowRead(w, r) || !settings.hostAllowed(w, r) {
			return
		}
		if !healthy() {
			writeText(w, http.StatusInternalServerError, "unhealthy\n")
			return
		}
		writeText(w, http.StatusOK, "ok\n")
	}
}

// healthMux is what HEALTH_PORT serves: /health alone.
func healthMux(version string, settings appSettings) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", healthHandler(version, settings))
	return mux
}

// hangUp closes the request's connection without an answer (as an app that dies mid-request
// does); false when the server cannot hand the connection over.
func hangUp(w http.ResponseWriter) bool {
	hijacker, ok := w.(http.Hijacker)
	if !ok {
		return false
	}
	conn, _, err := hijacker.Hijack()
	if err != nil {
		return false
	}
	_ = conn.Close()
	return true
}

func newMux(version, hostname string, settings appSettings) *http.ServeMux {
	mux := http.NewServeMux()
	var pageRequests atomic.Uint64

	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		if !allowRead(w, r) || !settings.hostAllowed(w, r) {
			return
		}
		if strings.HasPrefix(version, "broken") {
			writeText(w, http.StatusInternalServerError,
				fmt.Sprintf("version=%s host=%s: internal error\n", version, hostname))
			return
		}
		if strings.HasPrefix(version, "hangup") && pageRequests.Add(1)%2 == 0 && hangUp(w) {
			return
		}
		if s := r.URL.Query().Get("sleep"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d < 0 {
				http.Error(w, "invalid sleep duration", http.StatusBadRequest)
				return
			}
			if d > maxRequestSleep {
				d = maxRequestSleep
			}
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		writeText(w, http.StatusOK, fmt.Sprintf("version=%s host=%s\n", version, hostname))
	})

	// What the proxy in front says about the client: its address and the scheme it used.
	mux.HandleFunc("/forwarded", func(w http.ResponseWriter, r *http.Request) {
		if !allowRead(w, r) || !settings.hostAllowed(w, r) {
			return
		}
		writeText(w, http.StatusOK, fmt.Sprintf("for=%s proto=%s\n",
			r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto")))
	})

	// Every header that says who the client is and how it came, as the app got it: one
	// "Name: value" line each, several header lines of a name joined with ", " (as HTTP
	// reads them), "Name:" alone when absent.
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		if !allowRead(w, r) || !settings.hostAllowed(w, r) {
			return
		}
		body := ""
		for _, name := range forwardingHeaders {
			body += strings.TrimSpace(fmt.Sprintf("%s: %s", name,
				strings.Join(r.Header.Values(name), ", "))) + "\n"
		}
		writeText(w, http.StatusOK, body)
	})

	// What the files of MARK_ON_START hold: one "FILE LINE" per line, after this version.
	mux.HandleFunc("/marks", func(w http.ResponseWriter, r *http.Request) {
		if !allowRead(w, r) || !settings.hostAllowed(w, r) {
			return
		}
		body := fmt.Sprintf("version=%s\n", version)
		for _, file := range settings.marks {
			data, err := os.ReadFile(file)
			if err != nil {
				writeText(w, http.StatusInternalServerError, fmt.Sprintf("%v\n", err))
				return
			}
			for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
				body += fmt.Sprintf("%s %s\n", file, line)
			}
		}
		writeText(w, http.StatusOK, body)
	})

	mux.HandleFunc("/health", healthHandler(version, settings))

	return mux
}

// The headers a proxy in front sets about the client; /headers shows them.
var forwardingHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host",
	"X-Forwarded-Port", "X-Forwarded-Proto", "X-Real-IP", "X-Forwarded-Ssl",
	"X-Forwarded-Scheme", "X-Forwarded-Prefix", "Client-IP", "X-Client-IP", "True-Client-IP",
	"X-Cluster-Client-IP"}

func allowRead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

func writeText(w http.ResponseWriter, status int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// runCommand is the app's one-off commands (what `slotswap exec` and a release command
// run): `version`, `env NAME`, `exit CODE`, `cat FILE`, `mark FILE` (appends the version to
// FILE, e.g. in a volume, as a migration would leave its mark), `tty` (exits 0 when its
// stdin is a terminal), and `worker`, a long-running queue worker (worker.go).
func runCommand(version string, args []string) int {
	switch {
	case args[0] == "version" && len(args) == 1:
		fmt.Println(version)
		return 0
	case args[0] == "env" && len(args) == 2:
		fmt.Println(os.Getenv(args[1]))
		return 0
	case args[0] == "exit" && len(args) == 2:
		code, err := strconv.Atoi(args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "exit: not a number:", args[1])
			return 2
		}
		fmt.Println("exiting with", code)
		return code
	case args[0] == "sleep" && len(args) == 2: // a release command that outlives its timeout
		seconds, err := strconv.Atoi(args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "sleep: not a number:", args[1])
			return 2
		}
		fmt.Println("sleeping", seconds, "s")
		time.Sleep(time.Duration(seconds) * time.Second)
		return 0
	case args[0] == "cat" && len(args) == 2:
		data, err := os.ReadFile(args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "cat:", err)
			return 1
		}
		os.Stdout.Write(data)
		return 0
	case args[0] == "tty" && len(args) == 1:
		var termios syscall.Termios // a terminal answers TCGETS; /dev/null and pipes do not
		if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, os.Stdin.Fd(), syscall.TCGETS,
			uintptr(unsafe.Pointer(&termios))); errno == 0 {
			fmt.Println("stdin is a terminal")
			return 0
		}
		fmt.Println("stdin is not a terminal")
		return 1
	case args[0] == "worker" && len(args) == 1:
		return runWorker(version)
	case args[0] == "mark" && len(args) == 2:
		if err := appendVersion(args[1], version); err != nil {
			fmt.Fprintln(os.Stderr, "mark:", err)
			return 1
		}
		fmt.Println("marked", args[1], "with", version)
		return 0
	}
	fmt.Fprintln(os.Stderr, "usage: webapp [version | env NAME | exit CODE | sleep SECONDS | cat FILE | mark FILE | tty | worker]")
	return 2
}
