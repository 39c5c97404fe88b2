-- strategy: clean
-- keeps: every measured pref pair except the weakest: those whose strength percentile (under the identity
--   $strength) is below $drop_below, or whose category is in $drop_categories; the strongest first
-- params: strength, drop_below, drop_categories
-- paper: Secrets of RLHF II, sections 2.2-2.3 (the weakest 20% hurt a reward model)
-- returns: pair_id, rank, score, picked_by
with pref as (
    select pair_id from pairs where role = 'pref'
),
measured as (
    select pair_id, mean, percentile, category from strength where identity = $strength
),
kept as (
    select m.pair_id, m.mean, m.percentile
    from pref p join measured m using (pair_id)
    where not coalesce(m.percentile < $drop_below, false)
      and not list_contains(cast($drop_categories as varchar[]), m.category)
)
select pair_id, row_number() over (order by mean desc, pair_id) as rank, mean as score, 'clean' as picked_by
from kept
order by rank
