module httpserver

go 1.19
