-- mart_division_kpi: One row per county-level division: the operations screen's indicators (big
-- numbers are sums over the five rows, so row-level security narrows them to one county).
WITH month AS (SELECT date_trunc('month', as_of)::DATE AS m FROM serving_info),
person AS (
    SELECT division_code,
        count(*) FILTER (WHERE coalesce(is_alive, true)) AS residents,
        count(*) FILTER (WHERE date_trunc('month', birth_date) = (SELECT m FROM month))
            AS births_this_month,
        count(*) FILTER (WHERE date_trunc('month', death_date) = (SELECT m FROM month))
            AS deaths_this_month
    FROM population__person GROUP BY ALL),
household AS (
    SELECT division_code, count(*) FILTER (WHERE members > 0) AS households
    FROM population__household GROUP BY ALL),
entity AS (
    SELECT division_code,
        count(*) FILTER (WHERE entity_category = '市场主体' AND is_active) AS market_entities,
        count(*) FILTER (WHERE entity_category = '市场主体'
            AND date_trunc('month', established_date) = (SELECT m FROM month))
            AS new_entities_this_month,
        count(*) FILTER (WHERE entity_category = '社会组织' AND is_active)
            AS social_organisations
    FROM legal_entity__entity GROUP BY ALL),
licence AS (
    SELECT division_code,
        count(*) FILTER (WHERE status IN ('有效', '即将到期')) AS valid_licences,
        count(*) FILTER (WHERE status = '即将到期') AS licences_expiring_30d
    FROM licence__licence GROUP BY ALL),
credit AS (
    SELECT division_code,
        count(*) FILTER (WHERE on_black_list) AS black_listed_entities,
        count(*) FILTER (WHERE on_red_list) AS red_listed_entities
    FROM credit__entity_profile GROUP BY ALL),
service AS (
    SELECT division_code, count(*) AS service_cases,
        count(*) FILTER (WHERE is_overdue) AS overdue_cases,
        count(*) FILTER (WHERE NOT is_finished) AS open_cases
    FROM service__case GROUP BY ALL),
evaluation AS (
    SELECT division_code, count(*) AS evaluations,
        count(*) FILTER (WHERE is_satisfied) AS satisfied_evaluations
    FROM service__evaluation GROUP BY ALL),
hotline AS (
    SELECT division_code, count(*) AS hotline_tickets,
        count(*) FILTER (WHERE NOT is_closed) AS hotline_open_tickets
    FROM service__hotline_ticket GROUP BY ALL)
SELECT d.division_code, d.division_name, d.name_en,
    coalesce(person.residents, 0) AS residents,
    coalesce(household.households, 0) AS households,
    coalesce(person.births_this_month, 0) AS births_this_month,
    coalesce(person.deaths_this_month, 0) AS deaths_this_month,
    coalesce(entity.market_entities, 0) AS market_entities,
    coalesce(entity.new_entities_this_month, 0) AS new_entities_this_month,
    coalesce(entity.social_organisations, 0) AS social_organisations,
    coalesce(licence.valid_licences, 0) AS valid_licences,
    coalesce(licence.licences_expiring_30d, 0) AS licences_expiring_30d,
    coalesce(credit.black_listed_entities, 0) AS black_listed_entities,
    coalesce(credit.red_listed_entities, 0) AS red_listed_entities,
    coalesce(service.service_cases, 0) AS service_cases,
    coalesce(service.overdue_cases, 0) AS overdue_cases,
    coalesce(service.open_cases, 0) AS open_cases,
    coalesce(evaluation.evaluations, 0) AS evaluations,
    coalesce(evaluation.satisfied_evaluations, 0) AS satisfied_evaluations,
    coalesce(hotline.hotline_tickets, 0) AS hotline_tickets,
    coalesce(hotline.hotline_open_tickets, 0) AS hotline_open_tickets,
    (SELECT as_of FROM serving_info) AS as_of
FROM ref_division d
LEFT JOIN person USING (division_code)
LEFT JOIN household USING (division_code)
LEFT JOIN entity USING (division_code)
LEFT JOIN licence USING (division_code)
LEFT JOIN credit USING (division_code)
LEFT JOIN service USING (division_code)
LEFT JOIN evaluation USING (division_code)
LEFT JOIN hotline USING (division_code)
ORDER BY d.division_code
