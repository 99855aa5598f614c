package vm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// step is one named action of a pipeline with the undo that reverses it.
// undo runs also when do itself failed, so a step that acquired part of
// what it wanted can release it; undos are idempotent.
type step struct {
	name string
	do   func(ctx context.Context) error
	undo func(ctx context.Context) error
}

// undoTimeout bounds the rollback of a failed pipeline.
const undoTimeout = 60 * time.Second

// runSteps runs steps in order. When one fails, the undos of every step
// that ran (the failed one included) run in reverse order, detached from
// ctx's cancellation, and their errors are joined to the step's error.
func runSteps(ctx context.Context, logger *slog.Logger, report func(step, msg string), steps []step) error {
	for i, s := range steps {
		start := time.Now()
		if report != nil {
			report(s.name, "")
		}
		err := s.do(ctx)
		if err == nil {
			err = faultPoint(s.name)
		}
		if err == nil {
			logger.Info("step done", "step", s.name, "duration", time.Since(start).Round(time.Microsecond))
			continue
		}
		logger.Warn("step failed", "step", s.name, "error", err)
		failed := fmt.Errorf("%s: %w", s.name, err)
		undoErr := rollback(ctx, logger, steps[:i+1])
		if undoErr != nil {
			return errors.Join(failed, fmt.Errorf("rollback: %w", undoErr))
		}
		return failed
	}
	return nil
}

func rollback(ctx context.Context, logger *slog.Logger, ran []step) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	var errs []error
	for i := len(ran) - 1; i >= 0; i-- {
		s := ran[i]
		if s.undo == nil {
			continue
		}
		if err := s.undo(ctx); err != nil {
			logger.Error("undo failed", "step", s.name, "error", err)
			errs = append(errs, fmt.Errorf("undo %s: %w", s.name, err))
			continue
		}
		logger.Info("undo done", "step", s.name)
	}
	return errors.Join(errs...)
}
