// Package fctest is the test side of the Firecracker driver: it loads
// Firecracker's OpenAPI (Swagger 2.0) specification from the official Go
// SDK module, validates requests against it strictly (unknown fields are
// errors, as Firecracker rejects them), and runs a fake Firecracker that
// serves the API on a unix socket with the specification's pre-boot and
// post-boot ordering rules. Only tests and the fakefc helper import it.
package fctest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/go-openapi/loads"
	"github.com/go-openapi/spec"
	"github.com/go-openapi/strfmt"
	"github.com/go-openapi/swag"
	"github.com/go-openapi/validate"
)

// SDKModule is the module that ships the API specification, as
// client/swagger.yaml (API 1.0).
const SDKModule = "github.com/firecracker-microvm/firecracker-go-sdk"

// SDKSpecPath finds client/swagger.yaml in the SDK module the build
// uses, with `go list -m`.
func SDKSpecPath() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", SDKModule).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		return "", fmt.Errorf("find %s: %w", SDKModule, err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", fmt.Errorf("find %s: module not downloaded (run go mod download)", SDKModule)
	}
	return filepath.Join(dir, "client", "swagger.yaml"), nil
}

// Spec is a loaded, reference-expanded API specification.
type Spec struct {
	// Version is the API version the specification describes.
	Version string
	sw      *spec.Swagger
	routes  []route
}

type route struct {
	re   *regexp.Regexp
	tmpl string
	item spec.PathItem
}

// Shape selects the API shape Load returns.
type Shape int

const (
	// ShapeAPI10 is the specification as the SDK ships it.
	ShapeAPI10 Shape = iota
	// ShapeAPI15 is API 1.0 with the changes Firecracker's changelog
	// records up to 1.8 in the definitions the driver uses (see
	// applyAPI15).
	ShapeAPI15
)

// Load reads the specification at path in the given shape.
func Load(path string, shape Shape) (*Spec, error) {
	doc, err := loads.Spec(path)
	if err != nil {
		return nil, fmt.Errorf("load api spec %s: %w", path, err)
	}
	return fromDocument(doc, path, shape)
}

// LoadReader reads the specification (YAML or JSON) from r, which name
// describes in errors, in the given shape. The fake Firecracker reads it
// so from a descriptor its jailer passes: the file is outside the jail.
func LoadReader(r io.Reader, name string, shape Shape) (*Spec, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("load api spec %s: %w", name, err)
	}
	fromData := func(string) (json.RawMessage, error) {
		doc, err := swag.BytesToYAMLDoc(data) // YAML is a superset of JSON
		if err != nil {
			return nil, err
		}
		return swag.YAMLToJSON(doc)
	}
	doc, err := loads.Spec(name, loads.WithDocLoader(fromData))
	if err != nil {
		return nil, fmt.Errorf("load api spec %s: %w", name, err)
	}
	return fromDocument(doc, name, shape)
}

func fromDocument(doc *loads.Document, path string, shape Shape) (*Spec, error) {
	// A private copy, edited before references are expanded.
	raw, err := json.Marshal(doc.Spec())
	if err != nil {
		return nil, err
	}
	sw := new(spec.Swagger)
	if err := json.Unmarshal(raw, sw); err != nil {
		return nil, err
	}
	if shape == ShapeAPI15 {
		if err := applyAPI15(sw); err != nil {
			return nil, fmt.Errorf("load api spec %s: %w", path, err)
		}
	}
	if err := spec.ExpandSpec(sw, &spec.ExpandOptions{}); err != nil {
		return nil, fmt.Errorf("expand api spec %s: %w", path, err)
	}
	s := &Spec{Version: sw.Info.Version, sw: sw}
	for tmpl, item := range sw.Paths.Paths {
		pattern := "^" + regexp.MustCompile(`\\\{[^}]+\\\}`).ReplaceAllString(regexp.QuoteMeta(tmpl), `[^/]+`) + "$"
		s.routes = append(s.routes, route{re: regexp.MustCompile(pattern), tmpl: tmpl, item: item})
	}
	// Literal paths before templated ones.
	sort.Slice(s.routes, func(a, b int) bool { return s.routes[a].tmpl < s.routes[b].tmpl })
	return s, nil
}

// applyAPI15 edits API 1.0 definitions into their shape in Firecracker
// 1.5 and later, as the changelog and the 1.x swagger record them:
//   - Logger (1.5, logger rewrite #4047): log_path no longer required;
//     level gains Trace and Off; new field module.
//   - Drive (1.6, vhost-user block): is_read_only and path_on_host no
//     longer required (omitted for vhost-user); new field socket.
//   - MachineConfiguration (1.7, #4360): new field huge_pages (None, 2M);
//     cpu_template gains T2S, T2CL, T2A, V1N1, None (1.2 to 1.4) and is
//     deprecated (1.5).
//
// Vsock keeps vsock_id (deprecated since 1.0, marked for removal);
// NetworkInterface, BootSource, Metrics, InstanceActionInfo and
// InstanceInfo are unchanged.
func applyAPI15(sw *spec.Swagger) error {
	def := func(name string) (spec.Schema, error) {
		s, ok := sw.Definitions[name]
		if !ok {
			return s, fmt.Errorf("api 1.5 shape: no definition %s", name)
		}
		return s, nil
	}
	logger, err := def("Logger")
	if err != nil {
		return err
	}
	logger.Required = nil
	level := logger.Properties["level"]
	level.Enum = append(level.Enum, "Trace", "Off")
	logger.Properties["level"] = level
	logger.Properties["module"] = *spec.StringProperty()
	sw.Definitions["Logger"] = logger

	drive, err := def("Drive")
	if err != nil {
		return err
	}
	drive.Required = []string{"drive_id", "is_root_device"}
	drive.Properties["socket"] = *spec.StringProperty()
	sw.Definitions["Drive"] = drive

	mc, err := def("MachineConfiguration")
	if err != nil {
		return err
	}
	hp := spec.StringProperty()
	hp.Enum = []any{"None", "2M"}
	mc.Properties["huge_pages"] = *hp
	sw.Definitions["MachineConfiguration"] = mc

	tmpl, err := def("CpuTemplate")
	if err != nil {
		return err
	}
	tmpl.Enum = append(tmpl.Enum, "T2S", "T2CL", "T2A", "V1N1", "None")
	sw.Definitions["CpuTemplate"] = tmpl
	return nil
}

// Operation is one method on one path of the API.
type Operation struct {
	Path, Method string
	Template     string // the spec's path, e.g. /drives/{drive_id}
	Summary      string
	body         *spec.Schema
	bodyRequired bool
	op           *spec.Operation
}

// PreBootOnly and PostBootOnly are the ordering rules the specification
// states in an operation's summary.
func (o Operation) PreBootOnly() bool  { return strings.Contains(o.Summary, "Pre-boot only") }
func (o Operation) PostBootOnly() bool { return strings.Contains(o.Summary, "Post-boot only") }

// ErrNoRoute is a request for a path or method the API does not have.
var ErrNoRoute = errors.New("no such api operation")

// Lookup finds the operation for method and path.
func (s *Spec) Lookup(method, path string) (Operation, error) {
	for _, r := range s.routes {
		if !r.re.MatchString(path) {
			continue
		}
		var op *spec.Operation
		switch strings.ToUpper(method) {
		case "GET":
			op = r.item.Get
		case "PUT":
			op = r.item.Put
		case "PATCH":
			op = r.item.Patch
		case "POST":
			op = r.item.Post
		case "DELETE":
			op = r.item.Delete
		}
		if op == nil {
			return Operation{}, fmt.Errorf("%s %s: %w (method not allowed)", method, path, ErrNoRoute)
		}
		o := Operation{Path: path, Method: strings.ToUpper(method), Template: r.tmpl, Summary: op.Summary, op: op}
		for _, p := range op.Parameters {
			if p.In == "body" {
				o.body, o.bodyRequired = p.Schema, p.Required
			}
		}
		return o, nil
	}
	return Operation{}, fmt.Errorf("%s %s: %w", method, path, ErrNoRoute)
}

// ValidateRequest checks a request against the specification: the
// operation exists, and the body (raw JSON, nil for none) satisfies the
// operation's body schema with no fields the schema does not declare.
func (s *Spec) ValidateRequest(method, path string, body []byte) (Operation, error) {
	o, err := s.Lookup(method, path)
	if err != nil {
		return o, err
	}
	if o.body == nil {
		if len(strings.TrimSpace(string(body))) > 0 {
			return o, fmt.Errorf("%s %s: operation takes no body", method, path)
		}
		return o, nil
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		if o.bodyRequired {
			return o, fmt.Errorf("%s %s: body required", method, path)
		}
		return o, nil
	}
	if err := ValidateJSON(o.body, body); err != nil {
		return o, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return o, nil
}

// ValidateResponse checks an answer body against the schema the
// operation declares for status.
func (s *Spec) ValidateResponse(method, path string, status int, body []byte) error {
	o, err := s.Lookup(method, path)
	if err != nil {
		return err
	}
	if o.op.Responses == nil {
		return nil
	}
	resp, ok := o.op.Responses.StatusCodeResponses[status]
	if !ok {
		if o.op.Responses.Default == nil {
			return fmt.Errorf("%s %s: status %d not declared", method, path, status)
		}
		resp = *o.op.Responses.Default
	}
	if resp.Schema == nil {
		if len(strings.TrimSpace(string(body))) > 0 {
			return fmt.Errorf("%s %s: status %d has no body, got %q", method, path, status, body)
		}
		return nil
	}
	return ValidateJSON(resp.Schema, body)
}

// ValidateJSON validates raw JSON against schema strictly.
func ValidateJSON(schema *spec.Schema, raw []byte) error {
	var data any
	if err := json.Unmarshal(raw, &data); err != nil {
		return fmt.Errorf("body is not JSON: %w", err)
	}
	if err := validate.AgainstSchema(schema, data, strfmt.Default); err != nil {
		return fmt.Errorf("body does not match the schema: %w", err)
	}
	if err := unknownFields(schema, data, "body"); err != nil {
		return err
	}
	return nil
}

// unknownFields rejects object members the schema does not declare:
// Firecracker's API denies unknown fields, while Swagger allows them
// unless additionalProperties says otherwise.
func unknownFields(schema *spec.Schema, data any, where string) error {
	switch v := data.(type) {
	case map[string]any:
		if len(schema.Properties) == 0 {
			return nil // a free-form object (MMDS contents)
		}
		for k, val := range v {
			prop, ok := schema.Properties[k]
			if !ok {
				return fmt.Errorf("%s: unknown field %q", where, k)
			}
			if err := unknownFields(&prop, val, where+"."+k); err != nil {
				return err
			}
		}
	case []any:
		if schema.Items != nil && schema.Items.Schema != nil {
			for i, val := range v {
				if err := unknownFields(schema.Items.Schema, val, fmt.Sprintf("%s[%d]", where, i)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
