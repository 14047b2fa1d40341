package events

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// RuleSet is a validated, immutable set of rules, ready to match requests.
// It is safe for concurrent use.
type RuleSet struct {
	rules  []Rule
	minLen int // shortest rule path
	maxLen int // longest rule path
}

// NewRuleSet copies rules, applies o, normalises each rule (path to lower
// case without a trailing slash, methods to upper case) and validates it.
// An error names the rule and the field at fault.
func NewRuleSet(rules []Rule, o Overrides) (*RuleSet, error) {
	rs := &RuleSet{rules: make([]Rule, len(rules))}
	for i := range rules {
		rs.rules[i] = rules[i].clone()
	}
	if err := rs.override("delete", o.DeleteParams); err != nil {
		return nil, fmt.Errorf("overrides: delete params: %w", err)
	}
	if err := rs.override("upload", o.EditParams); err != nil {
		return nil, fmt.Errorf("overrides: edit params: %w", err)
	}

	seen := make(map[string]bool, len(rs.rules))
	for i := range rs.rules {
		r := &rs.rules[i]
		if r.Name == "" {
			return nil, fmt.Errorf("rule %d: name: must not be empty", i)
		}
		if seen[r.Name] {
			return nil, fmt.Errorf("rule %q: name: duplicate", r.Name)
		}
		seen[r.Name] = true
		if err := r.normalize(); err != nil {
			return nil, fmt.Errorf("rule %q: %w", r.Name, err)
		}
		if i == 0 || len(r.Path) < rs.minLen {
			rs.minLen = len(r.Path)
		}
		rs.maxLen = max(rs.maxLen, len(r.Path))
	}
	return rs, nil
}

// override replaces the EntryParams of the rule called name with params,
// when params is not empty.
func (rs *RuleSet) override(name string, params []string) error {
	if len(params) == 0 {
		return nil
	}
	for i := range rs.rules {
		if rs.rules[i].Name == name {
			rs.rules[i].EntryParams = slices.Clone(params)
			return nil
		}
	}
	return fmt.Errorf("no rule named %q", name)
}

// Match returns the rule for a request, or nil. The path comparison ignores
// ASCII case and one trailing slash; a path no rule can match costs a length
// check. The rule returned belongs to the set and must not be modified.
func (rs *RuleSet) Match(method, path string) *Rule {
	if rs == nil {
		return nil
	}
	if n := len(path); n > 1 && path[n-1] == '/' {
		path = path[:n-1]
	}
	if len(path) < rs.minLen || len(path) > rs.maxLen {
		return nil
	}
	for i := range rs.rules {
		r := &rs.rules[i]
		if equalFoldASCII(r.Path, path) && r.allowsMethod(method) {
			return r
		}
	}
	return nil
}

// allowsMethod reports whether the rule matches the HTTP method.
func (r *Rule) allowsMethod(method string) bool {
	return r.Methods == nil || slices.Contains(r.Methods, method)
}

// normalize puts r's path and methods in canonical form and checks every
// field; an error names the field.
func (r *Rule) normalize() error {
	if !strings.HasPrefix(r.Path, "/") {
		return fmt.Errorf("path %q: must start with /", r.Path)
	}
	if strings.ContainsAny(r.Path, "?# \t\r\n") {
		return fmt.Errorf("path %q: must be a bare path", r.Path)
	}
	r.Path = strings.ToLower(r.Path)
	if n := len(r.Path); n > 1 && r.Path[n-1] == '/' {
		r.Path = r.Path[:n-1]
	}
	if r.Methods != nil && len(r.Methods) == 0 {
		return errors.New("methods: empty list (use nil for any method)")
	}
	for i, m := range r.Methods {
		if m == "" || strings.ContainsAny(m, " \t\r\n") {
			return fmt.Errorf("methods: %q is not an HTTP method", m)
		}
		r.Methods[i] = strings.ToUpper(m)
	}
	if r.Observe {
		if r.Trigger != "" || r.EntryTrigger != "" || len(r.EntryParams) > 0 || r.RequireEntries ||
			r.ResponseID != "" || r.MetaKeyParam != "" || r.MetaValueParam != "" ||
			r.Lookup != nil || r.Processed || r.NoWaitParam != "" {
			return errors.New("observe: an observing rule derives nothing and takes no other field")
		}
		return nil
	}
	if !ValidTrigger(string(r.Trigger)) {
		return fmt.Errorf("trigger: %q is not a trigger name", r.Trigger)
	}
	if r.EntryTrigger != "" && !ValidTrigger(string(r.EntryTrigger)) {
		return fmt.Errorf("entry trigger: %q is not a trigger name", r.EntryTrigger)
	}
	if err := checkNames(r.EntryParams); err != nil {
		return fmt.Errorf("entry params: %w", err)
	}
	if r.EntryTrigger != "" && len(r.EntryParams) == 0 {
		return errors.New("entry trigger: set without entry params")
	}
	if r.RequireEntries && len(r.EntryParams) == 0 {
		return errors.New("require entries: set without entry params")
	}
	if r.Processed && r.ResponseID == "" {
		return errors.New("processed: needs a response id")
	}
	if r.MetaValueParam != "" && r.MetaKeyParam == "" {
		return errors.New("meta value param: set without a meta key param")
	}
	if r.Lookup == nil {
		return nil
	}
	if r.MetaKeyParam == "" {
		return errors.New("lookup: needs a meta key param (its result is the metadata value)")
	}
	if r.MetaValueParam != "" {
		return errors.New("lookup: the metadata value cannot come from both a lookup and a meta value param")
	}
	if !strings.HasPrefix(r.Lookup.Path, "/") || strings.ContainsAny(r.Lookup.Path, "?# \t\r\n") {
		return fmt.Errorf("lookup: path %q: must be a bare path starting with /", r.Lookup.Path)
	}
	if len(r.Lookup.Params) == 0 {
		return errors.New("lookup: params: must not be empty")
	}
	if err := checkNames(r.Lookup.Params); err != nil {
		return fmt.Errorf("lookup: params: %w", err)
	}
	return nil
}

// checkNames rejects empty parameter names.
func checkNames(names []string) error {
	for i, n := range names {
		if n == "" {
			return fmt.Errorf("name %d is empty", i)
		}
	}
	return nil
}
