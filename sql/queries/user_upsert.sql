-- Create the user on first sight (producers choose ids); rename only when asked.
INSERT INTO users (id, display_name, created_at)
VALUES (:user_id, :display_name, :now)
ON CONFLICT (id) DO UPDATE
    SET display_name = CASE WHEN :rename THEN excluded.display_name ELSE users.display_name END
RETURNING display_name
