package client

// ConvertForTest exposes convert to the tests.
var ConvertForTest = convert
