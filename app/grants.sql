-- What the hello app's role needs, run once by the cluster's bootstrap as a
-- superuser, connected to the app's database (here "postgres"). The app
-- creates its table at start-up in the schema named after its role, the
-- first entry of PostgreSQL's default search_path ("$user", public), and owns
-- it; it needs no rights on schema public. Set the password from a secret:
-- ALTER ROLE app PASSWORD '...'.
CREATE ROLE app LOGIN;
GRANT CONNECT ON DATABASE postgres TO app;
CREATE SCHEMA app AUTHORIZATION app;
