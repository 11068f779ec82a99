package specgen

import (
	"encoding"
	"encoding/json"
	"reflect"
	"strings"
	"time"
)

// schemas builds component schemas from Go types.
type schemas struct {
	defs  map[string]any
	types map[string]reflect.Type // which type each component name is
}

var (
	timeType      = reflect.TypeFor[time.Time]()
	rawType       = reflect.TypeFor[json.RawMessage]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
)

// ref returns a schema for t: a $ref to a named component for structs,
// an inline schema otherwise.
func (s *schemas) ref(t reflect.Type) map[string]any {
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t == rawType:
		return map[string]any{"description": "any JSON value"}
	case t.Kind() == reflect.Pointer:
		sc := s.ref(t.Elem())
		return nullable(sc)
	case t.Implements(textMarshaler) || reflect.PointerTo(t).Implements(textMarshaler):
		return map[string]any{"type": "string"}
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Uint8, reflect.Uint16, reflect.Uint32:
		return map[string]any{"type": "integer"}
	case reflect.Int64, reflect.Uint, reflect.Uint64:
		return map[string]any{"type": "integer", "format": "int64"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": "array", "items": s.ref(t.Elem()), "nullable": true}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": s.ref(t.Elem()), "nullable": true}
	case reflect.Interface:
		return map[string]any{"description": "any JSON value"}
	case reflect.Struct:
		name := s.name(t)
		if _, ok := s.defs[name]; !ok {
			s.defs[name] = nil // placeholder: recursive types end here
			s.defs[name] = s.object(t)
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	return map[string]any{}
}

// nullable marks sc as possibly null (a $ref cannot carry siblings in
// OpenAPI 3.0, so it is wrapped).
func nullable(sc map[string]any) map[string]any {
	if _, ok := sc["$ref"]; ok {
		return map[string]any{"allOf": []any{sc}, "nullable": true}
	}
	sc["nullable"] = true
	return sc
}

// name is the component name of struct t: its Go name, or with its
// package's in front when another package's type took the name first
// (api.Schedule is "Schedule", fsm.Schedule then "FsmSchedule").
func (s *schemas) name(t reflect.Type) string {
	name := t.Name()
	if had, ok := s.types[name]; ok && had != t {
		pkg := t.PkgPath()[strings.LastIndexByte(t.PkgPath(), '/')+1:]
		name = strings.ToUpper(pkg[:1]) + pkg[1:] + name
	}
	s.types[name] = t
	return name
}

// object is the schema of struct t: its JSON fields (embedded structs'
// fields lifted, as encoding/json does), required unless omitempty or
// omitzero.
func (s *schemas) object(t reflect.Type) map[string]any {
	props := map[string]any{}
	var required []string
	s.fields(t, props, &required)
	out := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		out["required"] = required
	}
	return out
}

func (s *schemas) fields(t reflect.Type, props map[string]any, required *[]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				s.fields(ft, props, required) // lifted; an embedded pointer's fields may all be absent
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		props[name] = s.ref(f.Type)
		if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") {
			*required = append(*required, name)
		}
	}
}
