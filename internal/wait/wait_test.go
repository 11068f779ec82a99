package wait

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSleepFull(t *testing.T) {
	start := time.Now()
	if err := Sleep(context.Background(), 20*time.Millisecond); err != nil {
		t.Fatalf("Sleep = %v, want nil", err)
	}
	if el := time.Since(start); el < 20*time.Millisecond {
		t.Fatalf("returned after %v, before the 20ms pause", el)
	}
}

func TestSleepZero(t *testing.T) {
	if err := Sleep(context.Background(), 0); err != nil {
		t.Fatalf("Sleep(0) = %v, want nil", err)
	}
	if err := Sleep(context.Background(), -time.Second); err != nil {
		t.Fatalf("Sleep(-1s) = %v, want nil", err)
	}
}

func TestSleepCancelledDuring(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(10*time.Millisecond, cancel)
	start := time.Now()
	err := Sleep(ctx, time.Minute)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep = %v, want context.Canceled", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("cancellation took %v", el)
	}
}

func TestSleepAlreadyEnded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	// Even a zero pause reports the ended context, every time (a select
	// between a fired timer and a done channel would pick at random).
	for range 100 {
		if err := Sleep(ctx, 0); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Sleep(ended, 0) = %v, want DeadlineExceeded", err)
		}
		if err := Sleep(ctx, time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Sleep(ended, 1ms) = %v, want DeadlineExceeded", err)
		}
	}
}
