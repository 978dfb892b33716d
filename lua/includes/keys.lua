-- Names the namespace keys every rexec script receives, in rexec/keys.py's
-- SCRIPT_KEY_NAMES order. All share the hash tag {namespace}.
local K = {
  jobs = KEYS[1],            -- hash  id -> record "t|p|d|r|x|pi|v|o|e|s"
  payloads = KEYS[2],        -- hash  id -> msgpack payload bytes (absent when none)
  errors = KEYS[3],          -- hash  id -> last exception text
  ready = KEYS[4],           -- zset  lex, member "type|pk due L id[|pi]"
  scheduled = KEYS[5],       -- zset  score due_ms, member as in ready
  locked = KEYS[6],          -- zset  score lock_expires_ms, member id
  suspended = KEYS[7],       -- zset  lex, member as in ready
  incidents = KEYS[8],       -- zset  score time of incident, member id
  pijobs = KEYS[9],          -- zset  lex, member "pi|pk due L id|type" (ready exclusive jobs)
  pilocks = KEYS[10],        -- hash  pi -> number of its exclusive jobs locked
  types = KEYS[11],          -- set   job types with jobs or a definition
  suspended_types = KEYS[12],-- set   suspended job definitions
  overrides = KEYS[13],      -- hash  type -> overriding priority key
  pis = KEYS[14],            -- hash  pi -> "revision|priority key or empty"
  vars = KEYS[15],           -- hash  pi -> msgpack variables
  seq = KEYS[16],            -- string  id counter (jobs and process instances)
  counters = KEYS[17],       -- hash  cluster-wide counters
  joins = KEYS[18],          -- hash  "<join id>|n" -> branches still to arrive,
                             --       "<join id>|f" -> join job fields, "|pl" -> payload
  branches = KEYS[19],       -- hash  branch job id -> its join id
  metrics = KEYS[20],        -- hash  "<worker id>|<counter>" -> count ("retired|..." too)
  workers = KEYS[21],        -- hash  worker id -> its announcement (JSON)
  heartbeats = KEYS[22],     -- zset  score last heartbeat ms, member worker id
  history = KEYS[23],        -- stream  finished jobs, when the history is on
  parked = KEYS[24],         -- zset  lex, member as in pijobs: the parked jobs among them
  type_jobs = KEYS[25],      -- hash  type -> number of its jobs (types counted since created)
  definitions = KEYS[26],    -- hash  type -> stored job definition (rexec/definitions.py)
  pvals = KEYS[27],          -- hash  pi -> plain forms of its scalar variables (rules read them)
  suspended_pis = KEYS[28],  -- set   suspended process instances
  future = KEYS[29],         -- zset  lex, the scheduled jobs as in ready (see next_candidates)
  instance_jobs = KEYS[30],  -- zset  lex, member "pi|id": the jobs of each process instance
  results = KEYS[31],        -- hash  "<id>" -> result meta, "<id>|v" value, "<id>|e" errors,
                             --       "<id>|w" worker ids (types with keep_result; rexec/handles.py)
  result_expiry = KEYS[32],  -- zset  score expiry ms, member id: the finished jobs in results
  unique_keys = KEYS[33],    -- hash  unique key -> id of the job holding it
  job_keys = KEYS[34],       -- hash  id -> the unique key the job holds
  settings = KEYS[35],       -- hash  namespace settings ("result_cap")
}
