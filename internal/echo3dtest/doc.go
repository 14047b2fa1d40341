// Package echo3dtest holds test doubles for the echo3D REST API: the recorded
// fixture traffic in shared/fixtures/echo3d (Fixture, LoadFixtures), a handler
// that answers with that recorded traffic (Replayer), and a small stateful
// fake of the API (Server) for end-to-end tests and local demos.
//
// Everything here is meant for tests and demos only. It uses the standard
// library and the project's events package, nothing else.
package echo3dtest
