package wireclient

// DialPrivilegedPort lets tests replace transport.DialPrivileged.
var DialPrivilegedPort = &dialPrivilegedPort
