module example.com/business

go 1.19
