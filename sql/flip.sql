-- strategy: flip
-- keeps: every measured pref pair, the strongest first; flipped (exported and trained with chosen and
--   rejected swapped) where its strength percentile (under the identity $strength) is below $bottom
-- params: strength, bottom
-- paper: Secrets of RLHF II, section 2.4.1
-- returns: pair_id, rank, score, picked_by, flipped
with pref as (
    select pair_id from pairs where role = 'pref'
),
measured as (
    select pair_id, mean, percentile from strength where identity = $strength
),
final as (
    select m.pair_id, m.mean, m.percentile < $bottom as flipped
    from pref p join measured m using (pair_id)
)
select pair_id, row_number() over (order by mean desc, pair_id) as rank, mean as score,
       case when flipped then 'flip' else 'keep' end as picked_by, flipped
from final
order by rank
