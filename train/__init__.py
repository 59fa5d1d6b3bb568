"""gifsent training: votes to Bradley-Terry scores, features, head search and reports."""
