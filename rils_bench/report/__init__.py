"""Result records (one JSON per checkpoint x task x dataset x setting) and the tables and plots built from them."""
