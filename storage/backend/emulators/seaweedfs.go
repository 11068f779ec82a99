package emulators

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SeaweedFS's S3 identity for tests: weed mini takes it from the AWS
// variables of its environment and refuses other signatures.
const (
	seaweedAccessKey = "crayfish"
	seaweedSecretKey = "crayfish-secret"
	seaweedS3Port    = "8333"
	seaweedMaster    = "9333"
)

// One weed mini at a time on this machine: two servers, even on distinct
// addresses, find each other's volume servers and answer 500 (measured with
// weed 4.53), so every server holds an exclusive lock on
// os.TempDir()/crayfish-weed.lock for its life, across test binaries.
const seaweedLockName = "crayfish-weed.lock"

type seaweedProcess struct {
	bin string
	ip  string // the loopback address it alone binds
	dir string
	log *Log

	mu     sync.Mutex
	pid    int
	exited chan error // nil while not running
}

// StartSeaweedFS starts a real S3 server for the test: SeaweedFS's `weed
// mini` (master, volume server, filer and S3 gateway in one process) on a
// loopback address of its own (127.0.15.x, SeaweedFS's default ports),
// with one new bucket; it stops when the test ends. The binary comes from
// scripts/seaweedfs.sh (found in the module root), which builds it from
// its Go module into a cache on first use; a failed build fails the test.
// Only one runs on the machine at a time (seaweedLockName): a test waits
// for another test binary's server to stop. Clients reach it through
// gocloud's s3blob with path-style requests over plain HTTP and the
// signing identity in Env.
func StartSeaweedFS(t testing.TB) *Server {
	t.Helper()
	bin, err := seaweedBinary(t)
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := lockSeaweed(t)
	if err != nil {
		t.Fatal(err)
	}
	p, err := launchSeaweed(bin)
	if err != nil {
		unlock()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.stop()
		unlock()
	})
	bucket := bucketName()
	if err := p.createBucket(bucket); err != nil {
		t.Fatalf("create bucket %s on SeaweedFS %s: %v\nweed output:\n%s", bucket, p.ip, err, p.log.String())
	}
	endpoint := "http://" + net.JoinHostPort(p.ip, seaweedS3Port)
	return &Server{
		URL:      s3URL(bucket, endpoint),
		Endpoint: endpoint,
		Bucket:   bucket,
		Log:      p.log,
		Env:      s3Env(seaweedAccessKey, seaweedSecretKey),
		weed:     p,
	}
}

// Kill ends a SeaweedFS server at once (SIGKILL to its process group), as
// a crash or an OOM kill would; its data directory stays for Restart.
// Killing a stopped server does nothing. It may be called from any
// goroutine.
func (s *Server) Kill() error {
	if s.weed == nil {
		return fmt.Errorf("kill %s: not a SeaweedFS server", s.Endpoint)
	}
	s.weed.halt(true)
	return nil
}

// Restart starts a SeaweedFS server again on the same address and data
// directory, stopping it first (SIGTERM) if it runs, and returns once it
// serves S3 again with the bucket still there. The bucket's objects are
// what weed kept on disk. It may be called from any goroutine.
func (s *Server) Restart() error {
	if s.weed == nil {
		return fmt.Errorf("restart %s: not a SeaweedFS server", s.Endpoint)
	}
	p := s.weed
	p.halt(false)
	if err := p.run(); err != nil {
		return fmt.Errorf("restart SeaweedFS on %s: %w", p.ip, err)
	}
	out, err := p.shell("s3.bucket.list")
	if err != nil {
		return fmt.Errorf("restart SeaweedFS on %s: %w", p.ip, err)
	}
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) > 0 && f[0] == s.Bucket {
			return nil
		}
	}
	return fmt.Errorf("restart SeaweedFS on %s: bucket %s is gone:\n%s", p.ip, s.Bucket, out)
}

// EnvPrivateNetwork, set to 1, tells StartSeaweedFS that this process
// runs in a network namespace of its own (the chaos harness's `unshare
// -Urn`): no other weed can reach its server, so it takes no lock and a
// long chaos run does not hold up every other SeaweedFS test.
const EnvPrivateNetwork = "CRAYFISH_TEST_PRIVATE_NETNS"

// lockSeaweed waits (up to ten minutes) for the machine-wide lock; the
// kernel releases it if the process dies.
func lockSeaweed(t testing.TB) (unlock func(), err error) {
	if os.Getenv(EnvPrivateNetwork) == "1" {
		return func() {}, nil
	}
	f, err := os.OpenFile(filepath.Join(os.TempDir(), seaweedLockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Minute)
	for logged := false; ; {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s (another test's SeaweedFS): %w", f.Name(), err)
		}
		if !logged {
			t.Logf("waiting for another test's SeaweedFS to stop (%s)", f.Name())
			logged = true
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// seaweedBinary runs scripts/seaweedfs.sh path: it builds weed once
// (minutes) and prints where it is.
func seaweedBinary(t testing.TB) (string, error) {
	return installedBinary(t, "seaweedfs.sh", []string{"path"}, "building weed from its Go module")
}

// launchSeaweed starts weed mini on a random 127.0.15.x; an address whose
// ports are taken makes it exit early, and another one is tried.
func launchSeaweed(bin string) (*seaweedProcess, error) {
	var err error
	for range 3 {
		ip := fmt.Sprintf("127.0.15.%d", 1+rand.IntN(254))
		var p *seaweedProcess
		if p, err = launchSeaweedOnce(bin, ip); err == nil {
			return p, nil
		}
		if !errors.Is(err, errSeaweedExited) {
			break
		}
	}
	return nil, err
}

var errSeaweedExited = errors.New("weed mini exited before serving")

func launchSeaweedOnce(bin, ip string) (*seaweedProcess, error) {
	removeStaleSeaweedDirs()
	dir, err := os.MkdirTemp("", fmt.Sprintf("crayfish-weed-%d-", os.Getpid()))
	if err != nil {
		return nil, err
	}
	p := &seaweedProcess{bin: bin, ip: ip, dir: dir, log: new(Log)}
	if err := p.run(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return p, nil
}

// run starts weed mini on p's address and directory and waits until it
// serves: the S3 gateway accepts connections and the master answers the
// shell (createBucket needs both).
func (p *seaweedProcess) run() error {
	cmd := exec.Command(p.bin, seaweedArgs(p.dir, p.ip)...)
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+seaweedAccessKey, "AWS_SECRET_ACCESS_KEY="+seaweedSecretKey)
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = p.log, p.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setParentDeathSignal(cmd.SysProcAttr)
	exited, err := startProcess(cmd)
	if err != nil {
		return fmt.Errorf("start %s: %w", p.bin, err)
	}
	p.mu.Lock()
	p.pid, p.exited = cmd.Process.Pid, exited
	p.mu.Unlock()
	deadline := time.Now().Add(90 * time.Second)
	for {
		c, derr := net.DialTimeout("tcp", net.JoinHostPort(p.ip, seaweedS3Port), time.Second)
		if derr == nil {
			c.Close()
			if _, serr := p.shell("s3.bucket.list"); serr == nil {
				return nil
			}
		}
		select {
		case err := <-exited:
			exited <- err
			p.halt(false)
			return fmt.Errorf("%w on %s (%v):\n%s", errSeaweedExited, p.ip, err, p.log.String())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.halt(false)
			return fmt.Errorf("weed mini not serving S3 on %s after 90s:\n%s", p.ip, p.log.String())
		}
	}
}

// removeStaleSeaweedDirs deletes the data of servers whose test binary is
// gone: the kernel kills weed with the binary (setParentDeathSignal), and
// nothing else removes its directory.
func removeStaleSeaweedDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "crayfish-weed-*-*"))
	for _, d := range dirs {
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(d), "crayfish-weed-%d-", &pid); err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}

// seaweedArgs are weed mini's arguments for a server of its own on ip:
// besides its TCP ports, weed mini binds unix sockets named after its
// ports in /tmp and admin ports on 127.0.0.1 unless told otherwise, and
// two servers would then talk to each other's filer.
func seaweedArgs(dir, ip string) []string {
	return []string{"mini", "-dir=" + dir, "-ip=" + ip, "-ip.bind=" + ip, "-admin.ui=false",
		"-filer.localSocket=" + filepath.Join(dir, "filer.sock"), "-s3.localSocket=" + filepath.Join(dir, "s3.sock"),
		"-admin.port.legacy=0", "-admin.worker.ip=" + ip,
		fmt.Sprintf("-master.port.grpc=%d", seaweedGRPCPort(grpcMaster, ip)),
		fmt.Sprintf("-volume.port.grpc=%d", seaweedGRPCPort(grpcVolume, ip)),
		fmt.Sprintf("-filer.port.grpc=%d", seaweedGRPCPort(grpcFiler, ip)),
		fmt.Sprintf("-s3.port.grpc=%d", seaweedGRPCPort(grpcS3, ip)),
		fmt.Sprintf("-admin.port.grpc=%d", seaweedGRPCPort(grpcAdmin, ip))}
}

// weed mini talks to its own gRPC services through unix sockets named
// after the port alone, /tmp/seaweedfs-<service>-grpc-<port>.sock
// (weed/command/mini.go): two servers on default ports, even on distinct
// addresses or in distinct network namespaces, dial each other's sockets
// and answer 500 or lose their buckets. So every server's gRPC ports
// derive from its address's last byte: distinct addresses, distinct
// sockets.
const (
	grpcMaster = 20000 + 256*iota
	grpcVolume
	grpcFiler
	grpcS3
	grpcAdmin
)

func seaweedGRPCPort(base int, ip string) int {
	a := net.ParseIP(ip).To4()
	if a == nil {
		return base
	}
	return base + int(a[3])
}

// shell runs one `weed shell` command against the master.
func (p *seaweedProcess) shell(command string) (string, error) {
	// host:port.grpcPort: the master's gRPC port is not the default one.
	master := fmt.Sprintf("%s.%d", net.JoinHostPort(p.ip, seaweedMaster), seaweedGRPCPort(grpcMaster, p.ip))
	cmd := exec.Command(p.bin, "shell", "-master="+master)
	cmd.Stdin = strings.NewReader(command + "\n")
	cmd.Dir = p.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("weed shell %q: %w: %s", command, err, out)
	}
	return string(out), nil
}

// createBucket creates bucket through the shell and checks it is listed.
func (p *seaweedProcess) createBucket(bucket string) error {
	if _, err := p.shell("s3.bucket.create -name " + bucket); err != nil {
		return err
	}
	out, err := p.shell("s3.bucket.list")
	if err != nil {
		return err
	}
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) > 0 && f[0] == bucket {
			return nil
		}
	}
	return fmt.Errorf("bucket %s not listed after its creation:\n%s", bucket, out)
}

// halt ends the process group if it runs: with SIGKILL if kill, else
// SIGTERM first (stopGroup).
func (p *seaweedProcess) halt(kill bool) {
	p.mu.Lock()
	pid, exited := p.pid, p.exited
	p.exited = nil
	p.mu.Unlock()
	if exited == nil {
		return
	}
	if kill {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		exited <- <-exited
		return
	}
	stopGroup(pid, exited)
}

// stop ends the process group and removes its data.
func (p *seaweedProcess) stop() {
	p.halt(false)
	os.RemoveAll(p.dir)
}
