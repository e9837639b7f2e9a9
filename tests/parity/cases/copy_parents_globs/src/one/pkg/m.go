g1
