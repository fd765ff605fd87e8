package kms

// DefaultRootsSubjects lists the compiled-in roots (for a sanity check).
func DefaultRootsSubjects() [][]byte {
	return DefaultRoots().Subjects() //lint:ignore SA1019 not a system pool
}
