module oldmux

go 1.24

require github.com/gorilla/mux v1.6.2

require github.com/gorilla/context v1.1.2 // indirect
