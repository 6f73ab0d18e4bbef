INSERT INTO badges (id, name, description, icon, rarity)
VALUES (:badge_id, :name, :description, :icon, :rarity)
ON CONFLICT (id) DO UPDATE
    SET name = excluded.name, description = excluded.description,
        icon = excluded.icon, rarity = excluded.rarity
