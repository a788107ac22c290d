package transport

// InFlightBytes is the part of MaxInFlightBytes in use (for tests).
func InFlightBytes(s *Server) int64 { return s.inFlight.inUse() }
