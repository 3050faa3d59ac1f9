package kubegather

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubev2v/must-gather-functions/internal/archive"
	"github.com/kubev2v/must-gather-functions/internal/archivetest"
	"github.com/kubev2v/must-gather-functions/internal/s3store"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
	"github.com/kubev2v/must-gather-functions/internal/testenv/kube"
)

// BenchmarkCopyFromExec measures the copy of a gathering's output: tar over
// exec into the copy container of a pod on a real kube-apiserver (kwok runs
// the tar locally), re-packed by archive.Writer.AddTar and uploaded through
// an io.Pipe into MinIO (s3store.Put), against raw minio-go PutObject of the
// same files without exec or re-packing. The output is MGF_BENCH_COPY_MIB
// MiB (default 1024) of poorly compressible data in 4 MiB files.
//
// peak-RSS-MiB is the peak resident set of the whole test process; run each
// sub-benchmark in its own process (make bench does). <process>-cpu-s is
// the CPU time each process of the path (MinIO, kube-apiserver, kwok, etcd,
// and the test process itself as cpu-s) used during the measured loop.
func BenchmarkCopyFromExec(b *testing.B) {
	if testing.Short() {
		b.Skip("copies a GiB")
	}
	mib := 1024
	if v, err := strconv.Atoi(os.Getenv("MGF_BENCH_COPY_MIB")); err == nil && v > 0 {
		mib = v
	}
	const fileSize = 4 << 20
	files := mib * (1 << 20) / fileSize
	total := int64(files) * fileSize
	ctx := context.Background()

	m := testenv.MinIO(b)
	bucket := testenv.Name("bench")
	store, err := s3store.New(ctx, s3store.Config{Endpoint: m.Endpoint, AccessKey: m.AccessKey, SecretKey: m.SecretKey, Bucket: bucket, Region: "us-east-1"})
	if err != nil {
		b.Fatal(err)
	}

	k := kube.Start(b)
	client, err := kubernetes.NewForConfig(k.Admin)
	if err != nil {
		b.Fatal(err)
	}
	ns, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-"}}, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	pod, err := client.CoreV1().Pods(ns.Name).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "must-gather-bench"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: gatherContainer, Image: "quay.io/kubev2v/forklift-must-gather:latest"},
			{Name: copyContainer, Image: "quay.io/kubev2v/forklift-must-gather:latest"},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	k.WaitPod(b, func(p *corev1.Pod) bool { return p.Name == pod.Name && p.Status.Phase == corev1.PodRunning })
	root := k.PodDir(ns.Name, pod.Name)
	paths := make([]string, files)
	for i := range paths {
		paths[i] = filepath.Join(root, fmt.Sprintf("namespaces/ns-%d/logs/file-%03d.log", i%16, i))
		writeRandomFile(b, paths[i], fileSize, uint64(i))
	}
	exec, err := NewExecutor(k.Admin)
	if err != nil {
		b.Fatal(err)
	}

	// Where the time goes: the CPU each process uses, and its memory.
	procs := k.Pids()
	procs["minio"] = m.Pid()

	b.Run("exec-pipeline", func(b *testing.B) {
		rss := archivetest.RecordRSS(b, procs)
		b.SetBytes(total)
		for i := 0; b.Loop(); i++ {
			key := fmt.Sprintf("pipeline/%d.tar.gz", i)
			pr, pw := io.Pipe()
			uploaded := make(chan error, 1)
			go func() {
				_, err := store.Put(ctx, key, pr)
				pr.CloseWithError(err)
				uploaded <- err
			}()
			aw := archive.NewWriter(pw)
			// The gatherer's copy stream, which could resume a broken exec.
			tries := 1
			s := &copyStream{
				ctx: ctx,
				exec: func(ctx context.Context, stdout io.Writer) error {
					return exec.Exec(ctx, ns.Name, pod.Name, copyContainer, copyCommand("/must-gather"), stdout, io.Discard)
				},
				tries: &tries,
				note:  func(format string, args ...any) { b.Logf(format, args...) },
			}
			err := aw.AddTar(ctx, "quay-io-kubev2v-forklift-must-gather-latest", s)
			if err == nil {
				// tar pads its stream past the end marker, as the gatherer knows.
				_, err = io.Copy(io.Discard, s)
			}
			s.close()
			if err == nil {
				err = s.exitErr
			}
			if err == nil {
				err = aw.Close()
			}
			pw.CloseWithError(err)
			if err != nil {
				b.Fatal(err)
			}
			if err := <-uploaded; err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			_ = store.Delete(ctx, key)
			b.StartTimer()
		}
		rss.Stop()
	})

	b.Run("raw-putobject", func(b *testing.B) {
		rss := archivetest.RecordRSS(b, procs)
		raw, err := minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, ""), Region: "us-east-1"})
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(total)
		for i := 0; b.Loop(); i++ {
			key := fmt.Sprintf("raw/%d.bin", i)
			r := archivetest.Files(paths)
			if _, err := raw.PutObject(ctx, bucket, key, r, -1, minio.PutObjectOptions{PartSize: s3store.DefaultPartSize}); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			_ = raw.RemoveObject(ctx, bucket, key, minio.RemoveObjectOptions{})
			b.StartTimer()
		}
		rss.Stop()
	})
}

func writeRandomFile(b *testing.B, path string, size int64, seed uint64) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	_, err = io.CopyN(f, rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}), size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		b.Fatal(err)
	}
}
