-- strategy: all
-- keeps: every scored pref pair, no floor and no size (the baseline whose reward model sees all the data)
-- params: iteration, branch, model_id
-- paper: FRFT section 6, Table 2 (vanilla PPO, RM on 75,000 HH-RLHF pairs)
-- returns: pair_id, rank, score, picked_by
select s.pair_id, row_number() over (order by s.pair_id) as rank, null as score, 'all' as picked_by
from similarities s join pairs p using (pair_id)
where s.branch = $branch and s.iteration = $iteration and s.model_id = $model_id and p.role = 'pref'
order by rank
