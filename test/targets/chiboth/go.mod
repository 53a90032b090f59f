module chiboth

go 1.24

require (
	github.com/go-chi/chi v1.5.5
	github.com/go-chi/chi/v5 v5.2.3
)
