package vm

// faultPoint is where tests inject a failure after a named step; in
// production builds it never fails (see fault_test.go for the hook).
var faultHook func(step string) error

func faultPoint(step string) error {
	if faultHook == nil {
		return nil
	}
	return faultHook(step)
}
